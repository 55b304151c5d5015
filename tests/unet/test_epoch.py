"""train_epoch: gradient norms and skipped steps under a float16 gradient scaler (driven on the CPU), host
reads per epoch rather than per step, and the split of the epoch's time."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unet.config import ModelConfig, TrainConfig
from unet.device import Precision
from unet.epoch import SYNC_EVERY, step_counts, train_epoch
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


# Tensor methods that copy a value to the host: on an accelerator each waits for the device to finish.
HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


@contextlib.contextmanager
def counting_host_reads(counts: list[str]) -> Iterator[None]:
    """Record every host read that code in ``unet`` makes (PyTorch's own, e.g. Adam's CPU step counter,
    is not ours to remove and is no device sync)."""
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def wrap(name: str) -> Callable[..., object]:
        original = originals[name]

        def counting(self: torch.Tensor, *args: object, **kwargs: object) -> object:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("unet."):
                counts.append(f"{caller}.{name}")
            return original(self, *args, **kwargs)

        return counting

    try:
        for name in HOST_READS:
            setattr(torch.Tensor, name, wrap(name))
        yield
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def epoch_of(steps: int, *, poison: int | None = None):
    """A train_epoch of ``steps`` one-image steps; the ``poison``-th image is NaN."""
    torch.manual_seed(0)
    config = TrainConfig(
        model=ModelConfig(in_channels=1, num_classes=1, depth=2, base_filters=2), device="cpu", batch_size=1
    )
    model = build_model(config.model)
    # One generator each: the first k images and masks are the same in epochs of any length.
    images = torch.randn(steps, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    if poison is not None:
        images[poison - 1] = float("nan")
    masks = torch.rand(steps, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.7
    data = TensorDataset(images, masks.long())
    progress: list[int] = []
    stats = train_epoch(
        model,
        build_loss(config.loss, num_classes=1),
        build_optimizer(model.parameters(), config),
        Precision(torch.device("cpu"), enabled=False),
        DataLoader(data, batch_size=1),
        config,
        torch.device("cpu"),
        torch.contiguous_format,
        on_batch=lambda step, total: progress.append(step),
    )
    return stats, progress


def test_host_reads_do_not_grow_with_the_steps():
    # Before: the finite-loss check read the loss every step (4 steps: 4 more reads than 0 extra).
    short, long = [], []
    with counting_host_reads(short):
        epoch_of(4)
    with counting_host_reads(long):
        _, progress = epoch_of(4 + 2 * SYNC_EVERY)
    assert progress == list(range(1, 4 + 2 * SYNC_EVERY + 1))  # the progress callback saw every step
    # One read of the finite-loss flag every SYNC_EVERY steps; everything else once per epoch.
    assert len(long) - len(short) == 2, (short, long)
    assert len(short) <= 12, short


def test_a_nan_loss_is_found_at_its_step_without_reading_every_step():
    stats, progress = epoch_of(SYNC_EVERY + 8, poison=3)
    assert stats.bad_step == 3
    assert math.isnan(stats.loss)
    assert stats.images == 3  # the steps up to the bad one
    assert progress[-1] == SYNC_EVERY  # stopped at the first read after it
    # The steps trained after the bad one (on wrecked weights) add nothing: the same figures as an
    # epoch that ends at the bad step.
    alone, _ = epoch_of(3, poison=3)
    assert math.isfinite(stats.grad_norm) and math.isfinite(stats.evidence["grad_norm_first"])
    for name in ("grad_norm", "grad_norm_max"):
        assert getattr(stats, name) == pytest.approx(getattr(alone, name))
    for name in ("grad_norm_first", "grad_norm_last"):
        assert stats.evidence[name] == pytest.approx(alone.evidence[name])  # type: ignore[literal-required]
    assert 0 <= stats.evidence["train_dice"] <= 1  # sampled steps 1 and 3 (of 40), not the later NaN ones


def test_the_epoch_time_is_split():
    class Slow(TensorDataset):
        def __getitem__(self, index):
            time.sleep(0.05)
            return super().__getitem__(index)

    config, model, criterion, optimizer, _ = setup()
    g = torch.Generator().manual_seed(0)
    data = Slow(torch.randn(4, 1, 16, 16, generator=g), (torch.rand(4, 16, 16, generator=g) > 0.7).long())
    stats = train_epoch(
        model,
        criterion,
        optimizer,
        Precision(torch.device("cpu"), enabled=False),
        DataLoader(data, batch_size=2),
        config,
        torch.device("cpu"),
        torch.contiguous_format,
    )
    assert stats.data_wait_s >= 4 * 0.05
    assert stats.evidence_s > 0 and stats.data_wait_s + stats.evidence_s < stats.seconds
