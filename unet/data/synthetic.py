"""Synthetic segmentation data: bright shapes on textured, noisy backgrounds, generated in memory.

The embedded default dataset: no files, seeded, quick to generate, and learnable by a small U-Net in a
few CPU epochs, so training, search and pruning can be exercised anywhere. Each image is built as

    background (a level in [0.3, 0.5] plus a smooth random low-frequency texture)
    + contrast x (shape brightness) inside the shapes
    + gaussian noise of standard deviation ``noise``

and then z-scored (like the folder datasets' default normalisation). Images are single-channel
(``in_channels == 1``). Shapes (ellipses, rotated rectangles, triangles) are added one by one until the
mask covers about ``foreground_fraction`` of the image. With ``num_classes`` K >= 2 each shape gets a class
c in 1..K-1, drawn as shape type (c - 1) mod 3 with brightness 1 + (c - 1) / 2, so classes differ in form
and intensity; later shapes cover earlier ones.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from unet.data.checks import check_float, check_int
from unet.data.normalization import zscore

TEXTURE_STD = 0.06  # standard deviation of the background texture, in image units
SMALLEST_SHAPE = 0.01  # shape areas as fractions of the image: drawn from [smallest, largest] ...
LARGEST_SHAPE = 0.08  # ... or less, to land near the target fraction
MAX_SHAPES = 200  # per image; overlapping shapes add less area, so the loop needs a bound
_SHAPE_TYPES = 3  # ellipse, rectangle, triangle


class SyntheticDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Generated images and masks held as tensors; items are views, nothing is computed per item.

    Attributes:
        images: ``(N, 1, S, S)`` float32, z-scored per image.
        masks: ``(N, S, S)`` int64 class indices.
        in_channels: 1.
        num_classes: 1 for binary masks, K >= 2 for classes 0..K-1.
    """

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, *, num_classes: int) -> None:
        self.images = images
        self.masks = masks
        self.in_channels = images.shape[1]
        self.num_classes = num_classes

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index]


def synthetic_datasets(
    *,
    n_train: int = 64,
    n_val: int = 16,
    size: int = 64,
    foreground_fraction: float = 0.1,
    num_classes: int = 1,
    seed: int = 0,
    contrast: float = 0.35,
    noise: float = 0.15,
) -> tuple[SyntheticDataset, SyntheticDataset]:
    """Generate training and validation sets of square single-channel images.

    Args:
        n_train: training images.
        n_val: validation images.
        size: side of the images in pixels (>= 16).
        foreground_fraction: share of each mask covered by shapes, approximately, in [0, 0.9].
        num_classes: 1 for binary masks; K >= 2 for classes 0..K-1 (0 is background).
        seed: the same seed gives identical arrays; training and validation draw from two disjoint
            streams spawned from it (``numpy.random.SeedSequence.spawn``).
        contrast: brightness of shapes above the background, in image units (the background is about
            0.3 to 0.5); lower is harder.
        noise: standard deviation of the pixel noise, in the same units; higher is harder.

    Returns:
        ``(train, val)`` ``SyntheticDataset``s.

    Raises:
        ConfigError: an argument out of range.
    """
    check_int(n_train, "n_train", low=1)
    check_int(n_val, "n_val", low=1)
    check_int(size, "size", low=16)
    check_float(foreground_fraction, "foreground_fraction", low=0.0, high=0.9)
    check_int(num_classes, "num_classes", low=1)
    check_int(seed, "seed", low=0)
    check_float(contrast, "contrast", low=0.0, high=math.inf)
    check_float(noise, "noise", low=0.0, high=math.inf)
    train_seed, val_seed = np.random.SeedSequence(seed).spawn(2)

    def generate(n: int, stream: np.random.SeedSequence) -> SyntheticDataset:
        rng = np.random.default_rng(stream)
        return _generate(
            n,
            rng,
            size=size,
            fraction=foreground_fraction,
            num_classes=num_classes,
            contrast=contrast,
            noise=noise,
        )

    return generate(n_train, train_seed), generate(n_val, val_seed)


def _generate(
    count: int,
    rng: np.random.Generator,
    *,
    size: int,
    fraction: float,
    num_classes: int,
    contrast: float,
    noise: float,
) -> SyntheticDataset:
    images = np.empty((count, 1, size, size), dtype=np.float32)
    masks = np.empty((count, size, size), dtype=np.int64)
    for i in range(count):
        mask, brightness = _shapes(rng, size=size, fraction=fraction, num_classes=num_classes)
        image = _background(rng, size) + contrast * brightness + rng.normal(0.0, noise, (size, size))
        images[i, 0] = zscore(image.astype(np.float32)[:, :, None], max_value=1.0)[:, :, 0]
        masks[i] = mask
    return SyntheticDataset(torch.from_numpy(images), torch.from_numpy(masks), num_classes=num_classes)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A flat level plus a smooth texture: a few random values per side, upsampled bicubically."""
    cells = int(rng.integers(3, 7))
    grid = rng.normal(size=(cells, cells)).astype(np.float32)
    texture = np.asarray(cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), dtype=np.float32)
    texture *= TEXTURE_STD / (float(texture.std()) + 1e-6)
    return rng.uniform(0.3, 0.5) + texture


def _shapes(
    rng: np.random.Generator, *, size: int, fraction: float, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Add shapes until they cover about ``fraction`` of the image: (class mask, brightness map)."""
    mask = np.zeros((size, size), dtype=np.uint16)  # OpenCV draws on uint16, not on int64
    brightness = np.zeros((size, size), dtype=np.float32)
    total = size * size
    target, smallest, largest = fraction * total, SMALLEST_SHAPE * total, LARGEST_SHAPE * total
    for _ in range(MAX_SHAPES):
        remaining = target - np.count_nonzero(mask)
        if remaining < smallest / 2:
            break
        area = max(min(rng.uniform(smallest, largest), remaining), smallest)
        label = 1 if num_classes == 1 else int(rng.integers(1, num_classes))
        level = rng.uniform(0.8, 1.2) * (1 + (label - 1) / 2)
        outline = _outline(rng, (label - 1) % _SHAPE_TYPES, area=area, size=size)
        cv2.fillPoly(mask, [outline], color=label)
        cv2.fillPoly(brightness, [outline], color=level)
    return mask.astype(np.int64), brightness


def _outline(rng: np.random.Generator, shape_type: int, *, area: float, size: int) -> np.ndarray:
    """Polygon ``(N, 2)`` int32 of an ellipse, rotated rectangle or triangle of about ``area`` pixels."""
    center = rng.uniform(0, size, 2)
    angle = rng.uniform(0, 180)
    if shape_type == 0:
        aspect = rng.uniform(0.5, 1.0)
        a = math.sqrt(area / (math.pi * aspect))
        axes = (max(round(a), 1), max(round(a * aspect), 1))
        ellipse = cv2.ellipse2Poly(tuple(int(v) for v in center.round()), axes, int(angle), 0, 360, 10)
        return np.asarray(ellipse, dtype=np.int32)
    if shape_type == 1:
        aspect = rng.uniform(0.5, 1.0)
        width = math.sqrt(area / aspect)
        box = cv2.boxPoints(((float(center[0]), float(center[1])), (width, width * aspect), angle))
        return box.round().astype(np.int32)
    radius = math.sqrt(4 * area / (3 * math.sqrt(3)))  # circumradius of an equilateral triangle
    angles = math.radians(angle) + np.arange(3) * 2 * math.pi / 3 + rng.uniform(-0.3, 0.3, 3)
    points = center + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return points.round().astype(np.int32)
