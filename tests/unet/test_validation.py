"""Whole-image validation: every real pixel of every image scored exactly once, padding never.

Images of odd sizes (smaller and larger than the patch, non-square), crafted and real (dsb2018), go
through ``unet.validation.evaluate``. Two probe models make the counting visible: an "oracle" that reads
the mask out of the image (Dice is 1.0 only if every tile lands back on its own pixels) and one that
predicts foreground everywhere (its Dice, ``2 F / (F + N)``, depends on the number N of pixels scored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from unet.config import ModelConfig
from unet.data.folder import FolderDataset, Sample, folder_datasets
from unet.inference import infer_logits
from unet.losses import build_loss
from unet.metrics import SegmentationMetrics
from unet.model import build_model
from unet.validation import evaluate

DSB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018-nuclei"


class Oracle(nn.Module):
    """Logit 2x - 1 of the first channel: foreground exactly where the (dtype-normalised) image is 1."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 2.0
            self.conv.bias.fill_(-1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Everywhere(Oracle):
    """Foreground at every pixel it is given."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(self.conv(x))


def _crafted(sizes: list[tuple[int, int]], *, patch_size: int) -> FolderDataset:
    rng = np.random.default_rng(0)
    samples = []
    for i, (h, w) in enumerate(sizes):
        mask = (rng.random((h, w)) < 0.3).astype(np.uint8)
        samples.append(Sample(f"s{i}", (mask * 255)[:, :, None].astype(np.uint8), mask))
    return FolderDataset(samples, transform=None, patch_size=patch_size, normalization="dtype")


def _oracle_dataset(samples: list[Sample], patch_size: int) -> FolderDataset:
    """The real masks, drawn into the images (255 on foreground), so the oracle can read them."""
    drawn = [Sample(s.stem, np.repeat((s.mask * 255)[:, :, None], 3, axis=2), s.mask) for s in samples]
    return FolderDataset(drawn, transform=None, patch_size=patch_size, normalization="dtype")


SIZES = [(13, 29), (16, 16), (40, 40), (100, 37), (33, 65)]  # patch 16: smaller, equal, larger, non-square


@pytest.mark.parametrize("patch_size", [16, 32, 128])
def test_each_real_pixel_is_scored_once_on_crafted_sizes(patch_size: int) -> None:
    dataset = _crafted(SIZES, patch_size=patch_size)
    real = sum(h * w for h, w in SIZES)
    oracle = evaluate(Oracle(1), dataset, num_classes=1)
    assert oracle.pixels == real and oracle.dice == 1.0 and oracle.iou == 1.0
    foreground = sum(int(s.mask.sum()) for s in dataset.samples)
    everywhere = evaluate(Everywhere(1), dataset, num_classes=1)
    assert everywhere.pixels == real
    assert everywhere.dice == pytest.approx(2 * foreground / (foreground + real), abs=1e-12)
    assert everywhere.iou == pytest.approx(foreground / real, abs=1e-12)


def test_each_real_pixel_is_scored_once_on_dsb2018() -> None:
    _, val = folder_datasets(DSB, patch_size=64, seed=0)
    sizes = [s.mask.shape for s in val.samples]
    assert any(h > 64 or w > 64 for h, w in sizes) and any(h != w for h, w in sizes)  # tiled, non-square
    real = sum(h * w for h, w in sizes)
    oracle = evaluate(Oracle(3), _oracle_dataset(val.samples, 64), num_classes=1)
    assert oracle.pixels == real and oracle.dice == 1.0
    foreground = sum(int(s.mask.sum()) for s in val.samples)
    everywhere = evaluate(Everywhere(3), val, num_classes=1)
    assert everywhere.pixels == real
    assert everywhere.dice == pytest.approx(2 * foreground / (foreground + real), abs=1e-12)


def test_tiles_blend_back_to_the_whole_image_for_a_pixelwise_model() -> None:
    torch.manual_seed(0)
    model = nn.Conv2d(3, 2, kernel_size=1)
    image = torch.randn(1, 3, 70, 45)
    tiled = infer_logits(model, image, patch_size=16)
    torch.testing.assert_close(tiled, model(image), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(13, 29), (40, 40), (70, 45)])
@pytest.mark.parametrize("tta", [False, True])
def test_unet_logits_cover_the_image_at_its_own_size(height: int, width: int, tta: bool) -> None:
    model = build_model(ModelConfig(in_channels=1, num_classes=3, depth=2, base_filters=4)).eval()
    logits = infer_logits(model, torch.randn(1, 1, height, width), patch_size=32, tta=tta)
    assert logits.shape == (1, 3, height, width) and torch.isfinite(logits).all()


def _one_by_one(model: nn.Module, dataset: FolderDataset, criterion: nn.Module) -> tuple[float, float, float]:
    """The reference score: each image alone, contiguous, as validation computed it before batching."""
    metrics = SegmentationMetrics(num_classes=1)
    losses = []
    with torch.inference_mode():
        for index in range(len(dataset)):
            image, mask = dataset[index]
            logits = infer_logits(model, image[None], patch_size=dataset.patch_size).float()
            losses.append(float(criterion(logits, mask[None])))
            metrics.update(logits, mask[None])
    scores = metrics.compute()
    return sum(losses) / len(losses), float(scores["dice"]), float(scores["iou"])  # type: ignore[arg-type]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_batched_validation_scores_as_one_image_at_a_time(memory_format: torch.memory_format) -> None:
    # Runs of equal sizes (batched together), sizes between them, and images larger than the patch (tiled).
    sizes = [(24, 24)] * 5 + [(20, 28)] * 3 + [(24, 24)] * 2 + [(50, 37), (70, 70)]
    dataset = _crafted(sizes, patch_size=32)
    torch.manual_seed(0)
    model = build_model(ModelConfig(in_channels=1, num_classes=1, depth=2, base_filters=4)).eval()
    criterion = build_loss("dice_bce", num_classes=1)
    loss, dice, iou = _one_by_one(model, dataset, criterion)
    model = model.to(memory_format=memory_format)  # type: ignore[call-overload]
    found = evaluate(model, dataset, criterion=criterion, num_classes=1, memory_format=memory_format)
    assert found.pixels == sum(h * w for h, w in sizes)
    assert found.loss == pytest.approx(loss, rel=1e-5)
    assert found.dice == pytest.approx(dice, abs=1e-5) and found.iou == pytest.approx(iou, abs=1e-5)
