"""Held-out test images: the test share of a folder (``test_fraction``) or a test folder, as whole images.

The test share is the one ``folder_datasets`` leaves out of training and validation when given the same
split arguments (``unet.data.split.split_with_test``), so a model trained on those sets never saw it.
Test images are brought to the training images' channel count, like the validation images are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unet.config import VAL_FRACTION
from unet.data.checks import check_float
from unet.data.files import Pair, paired_files
from unet.data.folder import FolderDataset, load_pair
from unet.data.split import split_with_test
from unet.errors import DataError


def held_out_pairs(
    root: Path | str,
    *,
    test_fraction: float,
    val_root: Path | str | None = None,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
) -> list[Pair]:
    """The image/mask pairs of ``root`` in its held-out test share, as ``folder_datasets`` splits it.

    Raises:
        DataError: the folder is unusable, or too small for a training, (validation) and test part.
        ConfigError: ``test_fraction`` is not in (0, 1).
    """
    check_float(test_fraction, "test_fraction", low=0.0, high=1.0, open_low=True, open_high=True)
    pairs = paired_files(root)
    split = split_with_test(
        [pair.stem for pair in pairs],
        val_fraction=val_fraction if val_root is None else None,
        test_fraction=test_fraction,
        seed=seed,
        source=Path(root) / "images",
    )
    held_out = set(split.test)
    return [pair for pair in pairs if pair.stem in held_out]


def test_folder_pairs(test_root: Path | str, *, beside: Sequence[Path | str | None]) -> list[Pair]:
    """The pairs of a held-out test folder, checked to share no image with the folders in ``beside``.

    Raises:
        DataError: the folder is unusable, or one of its images is also in a folder of ``beside`` (the
            training or validation data), whatever its name.
    """
    pairs = paired_files(test_root)
    seen = {_digest(p.image): p.image for root in beside if root for p in paired_files(root)}
    for pair in pairs:
        twin = seen.get(_digest(pair.image))
        if twin is not None:
            raise DataError(
                f"test image {pair.image} is also {twin}: held-out test data must share no image with "
                f"the training or validation data"
            )
    return pairs


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def held_out_dataset(
    pairs: list[Pair],
    *,
    in_channels: int,
    patch_size: int | None,
    normalization: str,
    num_classes: int | None,
) -> FolderDataset:
    """The pairs decoded as a dataset of whole images (validated like the validation set).

    Args:
        in_channels: the training images' channel count; gray test images are repeated to 3 if needed.
        patch_size: the training patch side, for tiling the larger images.
        normalization: the training data's normalisation name.
        num_classes: None or 1 for binary masks; K >= 2 for class indices 0..K-1.

    Raises:
        DataError: an unreadable pair, or a test image with more channels than the training images.
    """
    samples = [load_pair(pair, num_classes=num_classes) for pair in pairs]
    for i, sample in enumerate(samples):
        if sample.image.shape[2] == 1 and in_channels == 3:
            samples[i] = type(sample)(sample.stem, np.repeat(sample.image, 3, axis=2), sample.mask)
        elif sample.image.shape[2] != in_channels:
            raise DataError(
                f"test image {pairs[i].image} has {sample.image.shape[2]} channel(s) but the training "
                f"images have {in_channels}: convert the test images"
            )
    return FolderDataset(
        samples,
        transform=None,
        patch_size=patch_size,
        normalization=normalization,
        num_classes=num_classes or 1,
    )
