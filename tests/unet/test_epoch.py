"""train_epoch: gradient norms and skipped steps under a float16 gradient scaler (driven on the CPU)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unet.config import ModelConfig, TrainConfig
from unet.device import Precision
from unet.epoch import step_counts, train_epoch
from unet.losses import build_loss
from unet.model import build_model
from unet.optim import build_optimizer

INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("norm", "scaling", "counts"),
    [
        (1.5, True, True),
        (INF, True, False),  # the scaler skips the step: not a divergence, not in the statistics
        (NAN, True, False),
        (1.5, False, True),
        (INF, False, True),  # no scaler: the step updated the weights with inf, the record must show it
    ],
)
def test_step_counts(norm, scaling, counts):
    assert bool(step_counts(torch.tensor(norm, dtype=torch.float64), scaling=scaling)) is counts


def setup(seed: int = 0):
    torch.manual_seed(seed)
    config = TrainConfig(
        model=ModelConfig(in_channels=1, num_classes=1, depth=2, base_filters=4), device="cpu"
    )
    model = build_model(config.model)
    criterion = build_loss(config.loss, num_classes=1)
    optimizer = build_optimizer(model.parameters(), config)
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(
        torch.randn(16, 1, 16, 16, generator=g), (torch.rand(16, 16, 16, generator=g) > 0.7).long()
    )
    return config, model, criterion, optimizer, DataLoader(data, batch_size=4)


def poison_step(model: nn.Module, step: int) -> None:
    """Make the gradients of the ``step``-th backward pass (1-based) infinite, as a float16 overflow does."""
    calls = {"n": 0}
    first = next(model.parameters())

    def hook(grad: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return torch.full_like(grad, INF) if calls["n"] == step else grad

    first.register_hook(hook)


def test_overflowing_step_is_skipped_not_diverged():
    config, model, criterion, optimizer, loader = setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    precision = Precision(torch.device("cpu"), enabled=False, scaler=scaler)
    assert precision.scaling
    poison_step(model, step=2)
    stats = train_epoch(
        model, criterion, optimizer, precision, loader, config, torch.device("cpu"), torch.contiguous_format
    )
    assert stats.skipped_steps == 1
    assert stats.bad_step is None  # the loss stayed finite: nothing diverged
    assert math.isfinite(stats.grad_norm) and math.isfinite(stats.grad_norm_max) and stats.grad_norm > 0
    assert scaler.get_scale() == 2.0**9  # the scaler halved its scale after the overflow
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the inf step never reached them


def test_skipped_steps_leave_the_norm_of_the_others():
    # The same epoch without the poisoned step's update would differ; but the mean over the counted steps
    # must equal the mean of the per-step norms the scaler let through, computed here by hand.
    config, model, criterion, optimizer, loader = setup()
    precision = Precision(
        torch.device("cpu"), enabled=False, scaler=torch.amp.GradScaler("cpu", init_scale=1.0)
    )
    norms: list[float] = []
    real_step = optimizer.step

    def step(*args, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norms.append(float(torch.nn.utils.get_total_norm(grads)))
        return real_step(*args, **kwargs)

    optimizer.step = step  # called by the scaler only for the steps it does not skip
    poison_step(model, step=3)
    stats = train_epoch(
        model, criterion, optimizer, precision, loader, config, torch.device("cpu"), torch.contiguous_format
    )
    assert len(norms) == 3 and stats.skipped_steps == 1
    assert stats.grad_norm == pytest.approx(sum(norms) / 3, rel=1e-6)
    assert stats.grad_norm_max == pytest.approx(max(norms), rel=1e-6)


def test_without_a_scaler_an_inf_gradient_shows_in_the_record():
    config, model, criterion, optimizer, loader = setup()
    precision = Precision(torch.device("cpu"), enabled=True)  # CPU: float32, no scaler
    assert not precision.scaling and precision.describe() == "float32"
    poison_step(model, step=4)  # the last step, so no later loss turns NaN first
    stats = train_epoch(
        model, criterion, optimizer, precision, loader, config, torch.device("cpu"), torch.contiguous_format
    )
    assert stats.skipped_steps == 0
    assert stats.grad_norm_max == INF
