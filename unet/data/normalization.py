"""Intensity normalisation of images, applied last (after augmentation) on float32 arrays.

Each entry of ``NORMALIZATIONS`` takes an ``(H, W, C)`` float32 image in the file's own units (0..255
for 8-bit files, 0..65535 for 16-bit) and the dtype's maximum, and returns a new float32 array.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from unet.registry import look_up

Normalization = Callable[..., np.ndarray]

# Added to the standard deviation so a flat image (std 0) maps to zeros instead of dividing by zero;
# tiny next to any real spread in file units (0..255 or 0..65535).
ZSCORE_EPSILON = 1e-6


def zscore(image: np.ndarray, *, max_value: float) -> np.ndarray:
    """Per image and per channel: subtract the mean, divide by the standard deviation (+ epsilon).

    The default: it removes the brightness and contrast differences between images and bit depths.
    """
    mean = image.mean(axis=(0, 1), keepdims=True, dtype=np.float64)
    std = image.std(axis=(0, 1), keepdims=True, dtype=np.float64)
    return ((image - mean) / (std + ZSCORE_EPSILON)).astype(np.float32)


def minmax(image: np.ndarray, *, max_value: float) -> np.ndarray:
    """Per image (all channels together, keeping colour ratios): stretch to [0, 1]; a flat image gives 0."""
    low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros_like(image, dtype=np.float32)
    return ((image - low) / (high - low)).astype(np.float32)


def dtype_scale(image: np.ndarray, *, max_value: float) -> np.ndarray:
    """Divide by the dtype's maximum (255 or 65535): [0, 1] with absolute intensities kept across images."""
    return (image / np.float32(max_value)).astype(np.float32)


def no_normalization(image: np.ndarray, *, max_value: float) -> np.ndarray:
    """The float32 values in file units, unchanged."""
    return image.astype(np.float32, copy=False)


NORMALIZATIONS: dict[str, Normalization] = {
    "zscore": zscore,
    "minmax": minmax,
    "dtype": dtype_scale,
    "none": no_normalization,
}


def normalize_image(image: np.ndarray, name: str) -> np.ndarray:
    """A stored ``(H, W, C)`` image (integer file units, or float taken as [0, 1]) normalised as ``name``.

    The one path from a stored image to the network's input for validation and prediction, so both
    see the same floats.
    """
    integer = np.issubdtype(image.dtype, np.integer)
    max_value = float(np.iinfo(image.dtype).max) if integer else 1.0
    return get_normalization(name)(image.astype(np.float32), max_value=max_value)


def get_normalization(name: str) -> Normalization:
    """The normalisation called ``name``; an unknown name raises ``ConfigError`` with a suggestion."""
    return look_up(NORMALIZATIONS, name, what="normalization")
