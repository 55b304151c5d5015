"""Data for the U-Net: folder datasets, synthetic datasets, transforms, normalisation and mask decoding.

Every dataset yields ``(image, mask)``: image float32 ``(C, H, W)``, mask int64 ``(H, W)`` class indices
({0, 1} when binary, 0..K-1 for K classes), and exposes ``in_channels`` and ``num_classes`` (1 means
binary, as in ``unet.config.ModelConfig``). Data problems raise ``unet.errors.DataError`` with one line
naming the file or folder and the fix.
"""

from __future__ import annotations

from unet.data.folder import FolderDataset, folder_datasets
from unet.data.masks import decode_mask
from unet.data.normalization import NORMALIZATIONS
from unet.data.split import Split, fold_indices, split_stems, split_with_test
from unet.data.synthetic import SyntheticDataset, synthetic_datasets
from unet.data.transforms import train_transforms

__all__ = [
    "NORMALIZATIONS",
    "FolderDataset",
    "Split",
    "SyntheticDataset",
    "decode_mask",
    "fold_indices",
    "folder_datasets",
    "split_stems",
    "split_with_test",
    "synthetic_datasets",
    "train_transforms",
]
