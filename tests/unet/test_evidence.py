"""The per-epoch evidence (shares, training Dice, end-layer gradients, input scale) on hand-made tensors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from unet.config import ModelConfig, TrainConfig
from unet.data import synthetic_datasets
from unet.evidence import TrainEvidence, end_layers, foreground_shares
from unet.fit import fit
from unet.metrics import SegmentationMetrics


def test_foreground_shares_binary_by_hand() -> None:
    metrics = SegmentationMetrics(num_classes=1)
    # 8 pixels: 2 truly foreground; the model predicts 4 as foreground (1 of them right).
    target = torch.tensor([[[1, 1, 0, 0, 0, 0, 0, 0]]])
    logits = torch.tensor([[[[1.0, -1, 1, 1, 1, -1, -1, -1]]]])
    metrics.update(logits, target)
    shares = foreground_shares(metrics.compute())
    assert shares["val_pred_fg"] == pytest.approx(4 / 8)
    assert shares["val_true_fg"] == pytest.approx(2 / 8)
    assert json.loads(str(shares["val_class_shares"])) == {"1": [0.5, 0.25]}


def test_foreground_shares_multi_class() -> None:
    metrics = SegmentationMetrics(num_classes=3)
    target = torch.tensor([[[0, 0, 1, 2]]])
    pred = torch.tensor([[[0, 2, 2, 2]]])
    logits = nn.functional.one_hot(pred, 3).permute(0, 3, 1, 2).float()
    metrics.update(logits, target)
    shares = foreground_shares(metrics.compute())
    assert (shares["val_pred_fg"], shares["val_true_fg"]) == (pytest.approx(0.75), pytest.approx(0.5))
    assert json.loads(str(shares["val_class_shares"])) == {"1": [0.0, 0.25], "2": [0.75, 0.25]}


def test_train_evidence_by_hand() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 1, 1))
    first, last = end_layers(model)
    assert first is model[0].weight and last is model[2].weight
    evidence = TrainEvidence(model, num_classes=1)
    images = torch.tensor([0.0, 255.0, 255.0, 0.0]).view(1, 1, 2, 2)
    masks = torch.tensor([[[0, 1], [1, 0]]])
    logits = model(images)
    evidence.after_forward(images, logits, masks)
    nn.functional.binary_cross_entropy_with_logits(logits[:, 0], masks.float()).backward()
    evidence.after_backward()
    found = evidence.result()
    assert found["input_mean"] == pytest.approx(127.5)
    assert found["input_std"] == pytest.approx(127.5)
    assert found["input_max"] == 255.0
    assert found["grad_norm_first"] == pytest.approx(float(model[0].weight.grad.norm()))
    assert found["grad_norm_last"] == pytest.approx(float(model[2].weight.grad.norm()))
    expected = SegmentationMetrics(num_classes=1)
    expected.update(logits.detach(), masks)
    assert found["train_dice"] == pytest.approx(expected.compute()["dice"])


def test_no_step_gives_nan() -> None:
    found = TrainEvidence(nn.Conv2d(1, 1, 1), num_classes=1).result()
    assert all(math.isnan(v) for v in found.values())


def test_fit_records_the_evidence() -> None:
    train, val = synthetic_datasets(n_train=16, n_val=8, size=32, seed=0)
    model = ModelConfig(in_channels=1, num_classes=1, depth=2, base_filters=8)
    record = fit(TrainConfig(model=model, epochs=1, batch_size=8, device="cpu"), train, val).history[0]
    true_share = float((val.masks > 0).double().mean())
    assert record.val_true_fg == pytest.approx(true_share)
    assert 0.0 <= record.val_pred_fg <= 1.0 and 0.0 <= record.train_dice <= 1.0
    assert record.grad_norm_first > 0 and record.grad_norm_last > 0
    # Synthetic images are z-scored per image: mean 0, standard deviation 1.
    assert abs(record.input_mean) < 1e-3 and record.input_std == pytest.approx(1.0, abs=1e-3)
    assert json.loads(record.val_class_shares)["1"][1] == pytest.approx(true_share, abs=1e-6)
