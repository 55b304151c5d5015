"""The geometric augmentation on batches already on the device: random crop, flips, 90° rotations.

The albumentations pipeline (:mod:`unet.data.transforms`) stays the definition of the augmentation and
the CPU path. Where the CPU cannot augment as fast as the device trains (``python -m bench --only
pipeline`` measures the ratio), ``geometry_on: device`` moves this part to the device: the same
distributions as albumentations' ``RandomCrop`` (an offset uniform over every position, both ends
included), ``HorizontalFlip(p=0.5)``, ``VerticalFlip(p=0.5)`` and ``RandomRotate90(p=0.5)`` (when applied,
``k`` uniform in 0..3, counter-clockwise like ``np.rot90``), drawn per image, applied in that order,
and masks moved exactly with their images (tests/unet/test_data_device_geometry.py checks both).

Items of one batch must have one size (square, for the rotations): the folder pipeline therefore still
crops on the CPU, where a crop is a view and costs nothing; the device crop serves batches of larger
tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceGeometry:
    """Which geometric steps run on the device, for :func:`unet.epoch.train_epoch`."""

    crop: int | None = None  # side of a random square crop; None: no crop (items are patches already)
    flips: bool = True  # horizontal then vertical flip, each with probability 0.5
    rot90: bool = True  # with probability 0.5, rotate by k * 90° with k uniform in 0..3

    def apply(
        self, images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch: images ``(N, C, H, W)``, masks ``(N, H, W)``; the same moves for both."""
        if self.crop is not None:
            images, masks = random_crop(images, masks, self.crop, generator)
        if self.flips:
            images, masks = random_flip(images, masks, -1, generator)  # horizontal: mirror the columns
            images, masks = random_flip(images, masks, -2, generator)  # vertical: mirror the rows
        if self.rot90:
            images, masks = random_rot90(images, masks, generator)
        return images, masks


def _draw(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``n`` uniform numbers in [0, 1) from ``generator`` (on the generator's device), on ``device``."""
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def random_crop(
    images: torch.Tensor, masks: torch.Tensor, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``size`` square at an offset uniform over ``0..H-size`` and ``0..W-size``, one per image.

    Raises:
        ValueError: the images are smaller than ``size`` (pad them first, as the CPU pipeline does).
    """
    n, _, height, width = images.shape
    if height < size or width < size:
        raise ValueError(f"cannot crop {size}x{size} patches from {height}x{width} images: pad them first")
    top = (_draw(n, generator, images.device) * (height - size + 1)).long()
    left = (_draw(n, generator, images.device) * (width - size + 1)).long()
    steps = torch.arange(size, device=images.device)
    rows = (top[:, None] + steps)[:, :, None]  # (N, size, 1)
    cols = (left[:, None] + steps)[:, None, :]  # (N, 1, size)
    batch = torch.arange(n, device=images.device)[:, None, None]
    cropped = images.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    return cropped, masks[batch, rows, cols]


def random_flip(
    images: torch.Tensor, masks: torch.Tensor, dim: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror each image (and its mask) along ``dim`` (-1 columns, -2 rows) with probability 0.5."""
    flip = _draw(images.shape[0], generator, images.device) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(dim), images)
    return images, torch.where(flip[:, None, None], masks.flip(dim), masks)


def random_rot90(
    images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """With probability 0.5 rotate each (square) image and mask by ``k`` * 90°, ``k`` uniform in 0..3."""
    n = images.shape[0]
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"90° rotations need square batches but got {tuple(images.shape[-2:])}")
    applied = _draw(n, generator, images.device) < 0.5
    k = (_draw(n, generator, images.device) * 4).long().clamp(max=3)
    k = torch.where(applied, k, torch.zeros_like(k))
    out_images, out_masks = images, masks
    for turns in (1, 2, 3):
        chosen = k == turns
        out_images = torch.where(chosen[:, None, None, None], images.rot90(turns, (-2, -1)), out_images)
        out_masks = torch.where(chosen[:, None, None], masks.rot90(turns, (-2, -1)), out_masks)
    return out_images, out_masks
