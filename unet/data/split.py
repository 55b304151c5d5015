"""Deterministic splits of a folder's samples by seed: train/validation(/test) parts and k folds.

Every split sorts the names first, so it depends only on the set of names and the seed, not on the order
the file system lists them in, and draws one ``numpy`` permutation seeded with ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from unet.config import VAL_FRACTION
from unet.data.checks import check_float, check_int
from unet.data.problems import DataProblem
from unet.errors import ConfigError


class Split(NamedTuple):
    """The sorted stems of the three disjoint parts of a folder."""

    train: list[str]
    val: list[str]  # empty when the validation images are a folder of their own
    test: list[str]  # empty without a test share


def split_stems(
    stems: Sequence[str], *, val_fraction: float = VAL_FRACTION, seed: int = 0, source: Path | str = "dataset"
) -> tuple[list[str], list[str]]:
    """Split file stems into training and validation stems.

    A ``numpy`` permutation of the sorted stems seeded with ``seed`` picks ``round(n * val_fraction)``
    validation stems, clamped so each part has at least one.

    Args:
        stems: the samples' names (distinct).
        val_fraction: share of samples for validation, in (0, 1).
        seed: seed of the permutation; the same seed gives the same split.
        source: the folder the stems come from, for the error message.

    Returns:
        ``(train, val)``, each sorted.

    Raises:
        DataProblem: ``too-few-images`` with fewer than two stems.
        ConfigError: ``val_fraction`` or ``seed`` out of range.
    """
    check_float(val_fraction, "val_fraction", low=0.0, high=1.0, open_low=True, open_high=True)
    check_int(seed, "seed", low=0)
    ordered = sorted(stems)
    if len(ordered) < 2:
        raise DataProblem(
            "too-few-images",
            f"{source}: {len(ordered)} image(s), too few to split off a validation set",
            "add images, or pass a separate validation folder (val_root / --val)",
        )
    n_val = min(max(round(len(ordered) * val_fraction), 1), len(ordered) - 1)
    order = np.random.default_rng(seed).permutation(len(ordered))
    val = sorted(ordered[i] for i in order[:n_val])
    train = sorted(ordered[i] for i in order[n_val:])
    return train, val


def split_with_test(
    stems: Sequence[str],
    *,
    val_fraction: float | None,
    test_fraction: float,
    seed: int = 0,
    source: Path | str = "dataset",
) -> Split:
    """Split file stems into training, validation and held-out test stems, disjoint and seeded.

    The permutation of ``split_stems`` is drawn; its first ``round(n * test_fraction)`` stems (at least
    one) are the test part and the next ``round(n * val_fraction)`` (at least one) the validation part, so
    the test part depends on the stems, ``test_fraction`` and ``seed`` only (not on ``val_fraction``), and
    ``test_fraction`` 0 gives ``split_stems``'s split. Both fractions are shares of all the stems.

    Args:
        stems: the samples' names (distinct).
        val_fraction: share of samples for validation; None when validation is a folder of its own
            (the validation part is then empty).
        test_fraction: share of samples held out for testing, in [0, 1); 0 leaves the test part empty.
        seed: seed of the permutation; the same seed gives the same split.
        source: the folder the stems come from, for the error message.

    Returns:
        ``Split(train, val, test)``, each sorted.

    Raises:
        DataProblem: ``too-few-images`` when the stems cannot fill every part with at least one.
        ConfigError: a fraction or ``seed`` out of range, or the fractions summing to 1 or more.
    """
    check_float(test_fraction, "test_fraction", low=0.0, high=1.0, open_high=True)
    if val_fraction is not None:
        check_float(val_fraction, "val_fraction", low=0.0, high=1.0, open_low=True, open_high=True)
        if val_fraction + test_fraction >= 1:
            raise ConfigError(
                f"val_fraction {val_fraction:g} + test_fraction {test_fraction:g} must be below 1 (no image "
                "would be left to train on): lower one of them"
            )
    check_int(seed, "seed", low=0)
    ordered = sorted(stems)
    n = len(ordered)
    n_test = max(round(n * test_fraction), 1) if test_fraction > 0 else 0
    n_val = max(round(n * val_fraction), 1) if val_fraction is not None else 0
    if n_test == 0 and val_fraction is not None:
        train, val = split_stems(ordered, val_fraction=val_fraction, seed=seed, source=source)
        return Split(train, val, [])
    if n - n_test - n_val < 1:
        fractions = f"test_fraction {test_fraction:g}" + (
            f", val_fraction {val_fraction:g}" if val_fraction is not None else ""
        )
        raise DataProblem(
            "too-few-images",
            f"{source}: {n} image(s) are too few for a training, "
            f"{'validation and ' if val_fraction is not None else ''}test part of at least one image each "
            f"({fractions})",
            "add images, or lower test_fraction (or val_fraction)",
        )
    order = np.random.default_rng(seed).permutation(n)
    return Split(
        train=sorted(ordered[i] for i in order[n_test + n_val :]),
        val=sorted(ordered[i] for i in order[n_test : n_test + n_val]),
        test=sorted(ordered[i] for i in order[:n_test]),
    )


def fold_indices(n: int, *, k: int, seed: int = 0, source: str = "the data") -> list[list[int]]:
    """The validation indices of each of ``k`` folds over ``n`` samples: disjoint, covering, seeded.

    A permutation seeded with ``seed`` is dealt round-robin into ``k`` parts, so fold sizes differ by at
    most one; fold ``j`` validates on part ``j`` and trains on the other ``k - 1``.

    Args:
        n: the number of samples in the pool.
        k: the number of folds, at least 2.
        seed: seed of the permutation; the same seed gives the same folds.
        source: what the samples are, for the error message.

    Returns:
        ``k`` sorted lists of indices into ``range(n)``.

    Raises:
        DataProblem: ``too-few-images`` when ``n < k`` (a fold would validate on no image).
        ConfigError: ``k`` below 2 or ``seed`` out of range.
    """
    check_int(k, "folds", low=2)
    check_int(seed, "seed", low=0)
    if n < k:
        raise DataProblem(
            "too-few-images",
            f"{source}: {n} image(s) are too few for {k} folds (each fold validates on at least one)",
            f"set objective.folds to at most {n}, or add images",
        )
    order = np.random.default_rng(seed).permutation(n)
    return [sorted(int(i) for i in order[j::k]) for j in range(k)]
