"""Deterministic train/validation split of a folder's samples by seed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unet.data.checks import check_float, check_int
from unet.data.problems import DataProblem


def split_stems(
    stems: Sequence[str], *, val_fraction: float = 0.2, seed: int = 0, source: Path | str = "dataset"
) -> tuple[list[str], list[str]]:
    """Split file stems into training and validation stems.

    The stems are sorted first, so the split depends only on the set of names and the seed, not on the
    order the file system lists them in; a ``numpy`` permutation seeded with ``seed`` picks
    ``round(n * val_fraction)`` validation stems, clamped so each part has at least one.

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
