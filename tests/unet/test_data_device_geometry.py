"""The device-side geometric augmentation against albumentations, its definition: same distributions.

Every pixel of the test image has its own value, so each augmented patch tells exactly which crop offset
and which of the 8 symmetries of the square (rotations, reflections) produced it. The albumentations
steps are taken from ``train_transforms`` itself, so a change to the definition shows here.
"""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency, chisquare

from unet.config import ModelConfig, TrainConfig
from unet.data import folder_datasets, synthetic_datasets
from unet.data.device_geometry import DeviceGeometry, random_crop, random_rot90
from unet.data.transforms import seed_transforms, train_transforms
from unet.fit import fit

SIZE, PATCH, N = 12, 8, 3000
IMAGE = np.arange(SIZE * SIZE, dtype=np.uint8).reshape(SIZE, SIZE)
GEOMETRIC = (A.PadIfNeeded, A.RandomCrop, A.HorizontalFlip, A.VerticalFlip, A.RandomRotate90)
# The 8 symmetries of the square: k quarter turns (np.rot90), of the patch or of its mirror image.
SYMMETRIES = [(k, mirrored) for mirrored in (False, True) for k in range(4)]


def identify(patch: np.ndarray) -> tuple[int, int, int]:
    """(top, left, symmetry index) of a patch cut from IMAGE and moved by one symmetry."""
    found = []
    for index, (k, mirrored) in enumerate(SYMMETRIES):
        undone = np.rot90(patch, -k)
        undone = undone[:, ::-1] if mirrored else undone
        top, left = divmod(int(undone[0, 0]), SIZE)
        if (
            top + PATCH <= SIZE
            and left + PATCH <= SIZE
            and (undone == IMAGE[top : top + PATCH, left : left + PATCH]).all()
        ):
            found.append((top, left, index))
    assert len(found) == 1, found
    return found[0]


def albumentations_outcomes(n: int, seed: int) -> list[tuple[int, int, int]]:
    steps = [t for t in train_transforms(PATCH).transforms if isinstance(t, GEOMETRIC)]
    assert [type(t) for t in steps] == list(GEOMETRIC)  # the definition still has these steps, in order
    pipeline = A.Compose(steps)
    outcomes = []
    for i in range(n):
        seed_transforms(pipeline, seed * n + i)  # seeded per item, as FolderDataset does
        out = pipeline(image=IMAGE[:, :, None], mask=IMAGE.copy())
        assert (out["mask"] == out["image"][:, :, 0]).all()  # the mask moved exactly with its image
        outcomes.append(identify(out["image"][:, :, 0]))
    return outcomes


def device_outcomes(n: int, seed: int, geometry: DeviceGeometry) -> list[tuple[int, int, int]]:
    images = torch.from_numpy(IMAGE).float().expand(n, 1, SIZE, SIZE).clone()
    masks = torch.from_numpy(IMAGE).long().expand(n, SIZE, SIZE).clone()
    out_images, out_masks = geometry.apply(images, masks, torch.Generator().manual_seed(seed))
    assert out_images.shape == (n, 1, PATCH, PATCH) and out_masks.shape == (n, PATCH, PATCH)
    assert torch.equal(out_masks, out_images[:, 0].long())  # every mask moved exactly with its image
    return [identify(patch.numpy().astype(np.uint8)) for patch in out_images[:, 0]]


def counts(outcomes: list[tuple[int, int, int]], which: int, categories: int) -> np.ndarray:
    return np.bincount([o[which] for o in outcomes], minlength=categories)


@pytest.fixture(scope="module")
def reference() -> list[tuple[int, int, int]]:
    return albumentations_outcomes(N, seed=0)


# Symmetry probabilities of flip(0.5), flip(0.5), rot90(p=0.5, k uniform in 0..3 when applied): the
# flips give a rotation (none or both: a half turn) or a mirror image with 1/2 each; then the quarter
# turns: 0 with 0.625, 1, 2, 3 with 0.125 each. Total turns 0 and 2: (0.625 + 0.125) / 2 = 0.375; 1 and 3:
# 0.125; the same within the mirror images, each half weighted 1/2.
EXPECTED = np.array([0.375, 0.125, 0.375, 0.125] * 2) / 2


@pytest.mark.parametrize(("which", "categories"), [(0, SIZE - PATCH + 1), (1, SIZE - PATCH + 1), (2, 8)])
def test_device_path_has_albumentations_distributions(reference, which, categories):
    device = device_outcomes(N, seed=1, geometry=DeviceGeometry(crop=PATCH))
    table = np.stack([counts(reference, which, categories), counts(device, which, categories)])
    assert chi2_contingency(table).pvalue > 1e-3, table


def test_symmetries_follow_the_worked_out_probabilities(reference):
    for outcomes in (reference, device_outcomes(N, seed=2, geometry=DeviceGeometry(crop=PATCH))):
        assert chisquare(counts(outcomes, 2, 8), EXPECTED * N).pvalue > 1e-3


def test_the_comparison_catches_a_different_augmentation(reference):
    # Without the rotations the symmetries differ: the same test must reject it.
    device = device_outcomes(N, seed=1, geometry=DeviceGeometry(crop=PATCH, rot90=False))
    table = np.stack([counts(reference, 2, 8), counts(device, 2, 8)])
    assert chi2_contingency(table).pvalue < 1e-6


def test_crop_needs_large_enough_and_rotations_square_batches():
    with pytest.raises(ValueError, match="cannot crop 16x16 patches from 12x12 images: pad them first"):
        random_crop(torch.zeros(2, 1, 12, 12), torch.zeros(2, 12, 12), 16, torch.Generator())
    with pytest.raises(ValueError, match="square"):
        random_rot90(torch.zeros(2, 1, 8, 6), torch.zeros(2, 8, 6), torch.Generator())


def test_same_seed_same_batch():
    images = torch.rand(6, 3, 10, 10)
    masks = (images[:, 0] > 0.5).long()
    a = DeviceGeometry(crop=8).apply(images, masks, torch.Generator().manual_seed(5))
    b = DeviceGeometry(crop=8).apply(images, masks, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[1], (a[0][:, 0] > 0.5).long())  # masks follow images with several channels


def test_fit_applies_the_datas_device_geometry(monkeypatch):
    train, val = synthetic_datasets(n_train=8, n_val=4, size=16, seed=0)
    train.device_geometry = DeviceGeometry()
    seen = []
    real_apply = DeviceGeometry.apply

    def apply(self, images, masks, generator):
        seen.append(images.shape)
        return real_apply(self, images, masks, generator)

    monkeypatch.setattr(DeviceGeometry, "apply", apply)
    model = ModelConfig(in_channels=1, num_classes=1, depth=2, base_filters=4)
    result = fit(TrainConfig(model=model, epochs=2, batch_size=4, device="cpu"), train, val)
    assert len(result.history) == 2
    assert seen == [(4, 1, 16, 16)] * 4  # every training batch, no validation batch


def test_folder_datasets_leave_the_flips_to_the_device():
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018-nuclei"
    on_cpu, _ = folder_datasets(root, patch_size=32)
    on_device, val = folder_datasets(root, patch_size=32, geometry_on="device")
    assert on_cpu.device_geometry is None and val.device_geometry is None
    assert on_device.device_geometry == DeviceGeometry()
    names = [type(t).__name__ for t in on_device._transform.transforms]
    assert "HorizontalFlip" not in names and "RandomRotate90" not in names and "Affine" in names
