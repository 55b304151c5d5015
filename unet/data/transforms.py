"""The albumentations pipeline for training: a random patch, then augmentation.

Validation takes no patch: it scores whole images (``unet.validation``). The pipeline takes an image
of any size as ``(H, W, C)`` uint8 or uint16 and a mask of class indices ``(H, W)`` (uint8), and
returns a ``patch_size`` square patch: the image as float32 scaled to [0, 1] by its dtype's maximum
(``A.ToFloat``), the mask still integer class indices. Geometry comes first, on the stored
dtype, so that work is done on the patch, not the whole image; intensity changes come after
``ToFloat`` because albumentations applies them correctly to uint8 and float32 only, not uint16.
Masks are moved with nearest-neighbour interpolation (albumentations' default for masks), so they keep
their class indices. Padding reflects the image (and mask) so images smaller than the patch yield full
patches without flat borders; the data plan (``unet.data.plan``) keeps that padding below one stride.
"""

from __future__ import annotations

import albumentations as A
import cv2

from unet.data.checks import check_int

_PAD = cv2.BORDER_REFLECT_101


def train_transforms(patch_size: int, *, augment: bool = True) -> A.Compose:
    """Random ``patch_size`` crop, flips, 90° rotations, a mild affine warp, then intensity jitter.

    Args:
        patch_size: side of the square patches; smaller images are padded by reflection, larger ones
            cropped at a random place, so images of different sizes batch together.
        augment: False keeps only the random crop (and the scaling to [0, 1]).

    Returns:
        An ``A.Compose``; call it as ``out = t(image=image, mask=mask)``. Its randomness comes from its
        own seed (``t.set_random_seed``), not from numpy's or torch's global state.
    """
    check_int(patch_size, "patch_size", low=1)
    crop = [
        A.PadIfNeeded(min_height=patch_size, min_width=patch_size, border_mode=_PAD),
        A.RandomCrop(height=patch_size, width=patch_size),
    ]
    if not augment:
        return A.Compose([*crop, A.ToFloat()])
    geometry = [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=0.5),
        A.Affine(
            scale=(0.9, 1.1),
            translate_percent=(-0.05, 0.05),
            rotate=(-15, 15),
            shear=(-5, 5),
            border_mode=_PAD,
            p=0.5,
        ),
    ]
    intensity = [
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        A.RandomGamma(gamma_limit=(80, 120), p=0.3),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.3),  # std as a fraction of the [0, 1] range
    ]
    return A.Compose([*crop, *geometry, A.ToFloat(), *intensity])
