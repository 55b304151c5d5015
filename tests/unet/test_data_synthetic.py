"""Synthetic datasets: determinism, foreground fraction, classes, item layout and argument checks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from unet.data import synthetic_datasets
from unet.errors import ConfigError


def test_same_seed_gives_identical_arrays_and_other_seeds_differ() -> None:
    train_a, val_a = synthetic_datasets(n_train=6, n_val=3, size=32, seed=5)
    train_b, val_b = synthetic_datasets(n_train=6, n_val=3, size=32, seed=5)
    train_c, _ = synthetic_datasets(n_train=6, n_val=3, size=32, seed=6)
    assert torch.equal(train_a.images, train_b.images) and torch.equal(train_a.masks, train_b.masks)
    assert torch.equal(val_a.images, val_b.images) and torch.equal(val_a.masks, val_b.masks)
    assert not torch.equal(train_a.masks, train_c.masks)


def test_train_and_val_are_drawn_from_different_streams() -> None:
    train, val = synthetic_datasets(n_train=4, n_val=4, size=32)
    assert not any(torch.equal(train.masks[i], val.masks[j]) for i in range(4) for j in range(4))


def test_items_follow_the_dataset_convention() -> None:
    train, val = synthetic_datasets(n_train=5, n_val=2, size=48)
    assert (len(train), len(val), train.in_channels, train.num_classes) == (5, 2, 1, 1)
    images, masks = next(iter(DataLoader(train, batch_size=5)))
    assert images.shape == (5, 1, 48, 48) and images.dtype == torch.float32
    assert masks.shape == (5, 48, 48) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) == {0, 1}
    # z-scored per image: zero mean, unit standard deviation
    torch.testing.assert_close(images.mean(dim=(1, 2, 3)), torch.zeros(5), atol=1e-4, rtol=0)
    torch.testing.assert_close(images.std(dim=(1, 2, 3), correction=0), torch.ones(5), atol=1e-3, rtol=0)


@pytest.mark.parametrize("fraction", [0.0, 0.02, 0.05, 0.1, 0.3, 0.6])
def test_foreground_fraction_is_approximately_honoured(fraction: float) -> None:
    train, _ = synthetic_datasets(n_train=12, n_val=1, size=64, foreground_fraction=fraction)
    per_image = (train.masks > 0).float().mean(dim=(1, 2))
    # shapes are added until within half the smallest shape (1% of the image) of the target
    assert abs(per_image.mean().item() - fraction) <= 0.01
    assert (per_image - fraction).abs().max().item() <= 0.02


@pytest.mark.parametrize("num_classes", [2, 3, 4, 6])
def test_multi_class_masks_use_every_class(num_classes: int) -> None:
    train, _ = synthetic_datasets(
        n_train=8, n_val=1, size=64, num_classes=num_classes, foreground_fraction=0.3
    )
    assert train.num_classes == num_classes
    assert set(train.masks.unique().tolist()) == set(range(num_classes))


def test_shapes_are_brighter_than_background_by_the_contrast() -> None:
    train, _ = synthetic_datasets(n_train=8, n_val=1, size=64, contrast=0.5, noise=0.0)
    inside = train.images[:, 0][train.masks == 1].mean()
    outside = train.images[:, 0][train.masks == 0].mean()
    assert inside > outside + 1.0  # in z-score units: the shapes stand out clearly
    low, _ = synthetic_datasets(n_train=8, n_val=1, size=64, contrast=0.05, noise=0.0)
    low_gap = low.images[:, 0][low.masks == 1].mean() - low.images[:, 0][low.masks == 0].mean()
    assert low_gap < inside - outside


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_train": 0}, "n_train"),
        ({"n_val": 0}, "n_val"),
        ({"size": 8}, "size"),
        ({"foreground_fraction": 0.95}, "foreground_fraction"),
        ({"foreground_fraction": -0.1}, "foreground_fraction"),
        ({"num_classes": 0}, "num_classes"),
        ({"seed": -1}, "seed"),
        ({"contrast": -0.1}, "contrast"),
        ({"noise": float("nan")}, "noise"),
    ],
)
def test_bad_arguments_are_config_errors_naming_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        synthetic_datasets(**kwargs)


def test_generation_is_independent_of_global_random_state() -> None:
    np.random.seed(1)
    torch.manual_seed(1)
    first, _ = synthetic_datasets(n_train=2, n_val=1, size=32)
    np.random.seed(2)
    torch.manual_seed(2)
    second, _ = synthetic_datasets(n_train=2, n_val=1, size=32)
    assert torch.equal(first.images, second.images)


def _blur_threshold_dice(contrast: float) -> float:
    """Dice of the simplest segmenter: blur, then call the brightest 10% foreground (the default share)."""
    _, val = synthetic_datasets(n_val=16, contrast=contrast)
    images, truth = val.images[:, 0].numpy(), val.masks.numpy() == 1
    blurred = np.stack([cv2.GaussianBlur(image, (0, 0), 1.5) for image in images])
    predicted = blurred > np.quantile(blurred, 0.9)
    return float(2 * (predicted & truth).sum() / (predicted.sum() + truth.sum()))


def test_default_data_is_learnable_and_contrast_controls_difficulty() -> None:
    # The signal must be there for a U-Net to reach Dice >= 0.8 in a few epochs; without contrast
    # there is none. (fit()'s own test trains the U-Net.)
    assert _blur_threshold_dice(0.35) > 0.85
    assert _blur_threshold_dice(0.1) < 0.6
    assert _blur_threshold_dice(0.0) < 0.2
