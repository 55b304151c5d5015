"""The training loop: ``fit(config, train, val, on_epoch)`` trains one U-Net and returns its history.

The loop is deliberately plain (one optimizer step per batch, validation after every epoch) so that its
speed stays within a few percent of a bare PyTorch loop (``bench/train_loop.py`` measures it). Non-finite
losses stop the run with a reason instead of training on; ``on_epoch`` may stop it too, by returning True
or by raising (the search service raises its own stop exception from it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from unet.config import TrainConfig
from unet.divergence import exceeds
from unet.errors import ConfigError
from unet.evidence import ShareValues, TrainEvidence, TrainValues, foreground_shares
from unet.history import EpochRecord
from unet.losses import build_loss
from unet.metrics import SegmentationMetrics
from unet.model import build_model
from unet.optim import build_optimizer, build_scheduler, current_lr

logger = logging.getLogger(__name__)

OnEpoch = Callable[[EpochRecord], bool | None]
OnBatch = Callable[[int, int], None]


@dataclass
class FitResult:
    """What ``fit`` returns: the model as trained, the per-epoch history, and why it stopped early (if so)."""

    model: nn.Module
    history: list[EpochRecord] = field(default_factory=list)
    stop_reason: str | None = None  # None (ran all epochs), "diverged" or "callback"
    stop_message: str | None = None  # one line saying what made it stop
    device: str = "cpu"

    @property
    def best(self) -> EpochRecord | None:
        """The epoch with the highest validation Dice (the first of equals), or None without history."""
        finite = [r for r in self.history if math.isfinite(r.val_dice)]
        return max(finite, key=lambda r: r.val_dice, default=None)


def check_config(config: TrainConfig) -> None:
    """Check every name and combination in ``config`` without training (loss fits num_classes, ...).

    Raises:
        ConfigError: the first problem found, with the valid choices.
    """
    # One filter per level is enough to check the names without allocating a real model.
    build_model(dataclasses.replace(config.model, base_filters=1))
    build_loss(config.loss, num_classes=config.model.num_classes, pos_weight=config.pos_weight)
    params = [nn.Parameter(torch.zeros(1))]
    optimizer = build_optimizer(params, config)
    build_scheduler(optimizer, config)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} was asked for but CUDA is not available: use device 'auto' or 'cpu'"
        )
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CPU run is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(
    config: TrainConfig,
    train: Dataset,
    val: Dataset,
    on_epoch: OnEpoch | None = None,
    *,
    on_batch: OnBatch | None = None,
    model: nn.Module | None = None,
) -> FitResult:
    """Train a U-Net on ``train`` and validate it on ``val`` after every epoch.

    Args:
        config: the training settings; the model's in_channels/num_classes must match the data.
        train: items ``(image float32 (C, H, W), mask int64 (H, W))``, equal sizes within a batch.
        val: the same, evaluated in order without augmentation.
        on_epoch: called with each epoch's record; returning True stops training after that epoch.
        on_batch: called after each training step with (step, steps per epoch), e.g. for a progress bar.
        model: an existing model to train instead of building one from ``config.model``.

    Returns:
        The trained model (on its device), its history, and the reason it stopped early, if it did.

    Raises:
        ConfigError: a name or combination in the config is invalid (before any training step).
    """
    check_config(config)
    _check_data(config, train)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = model if model is not None else build_model(config.model)
    channels_last = config.channels_last if config.channels_last is not None else True
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    # Module.to takes memory_format (torch documents it); torch's type stubs lack that overload.
    model = model.to(device=device, memory_format=memory_format)  # type: ignore[call-overload]
    criterion = build_loss(config.loss, num_classes=config.model.num_classes, pos_weight=config.pos_weight)
    criterion = criterion.to(device)
    optimizer = build_optimizer(model.parameters(), config)
    scheduler = build_scheduler(optimizer, config)
    amp = _Amp(device, enabled=config.mixed_precision)
    train_loader, val_loader = _loaders(config, train, val, device)
    result = FitResult(model=model, device=str(device))
    first_loss: float | None = None

    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        lr = current_lr(optimizer)
        train_stats = _train_epoch(
            model, criterion, optimizer, amp, train_loader, config, device, memory_format, on_batch
        )
        train_seconds = time.perf_counter() - started
        val_loss, metrics = _validate(
            model, criterion, amp, val_loader, device, memory_format, config.model.num_classes
        )
        scheduler.step(val_loss)
        record = EpochRecord(
            epoch=epoch,
            train_loss=train_stats.loss,
            val_loss=val_loss,
            val_dice=metrics.dice,
            val_iou=metrics.iou,
            learning_rate=lr,
            grad_norm=train_stats.grad_norm,
            grad_norm_max=train_stats.grad_norm_max,
            seconds=time.perf_counter() - started,
            images_per_s=train_stats.images / train_seconds if train_seconds > 0 else 0.0,
            **train_stats.evidence,
            **metrics.shares,
        )
        result.history.append(record)
        if first_loss is None and math.isfinite(train_stats.first_loss):
            first_loss = train_stats.first_loss
        diverged = _divergence(record, first_loss, config.divergence_factor, train_stats.bad_step)
        stop = on_epoch is not None and bool(on_epoch(record))
        if diverged:
            result.stop_reason, result.stop_message = "diverged", diverged
            logger.info("training stopped: %s", diverged)  # the caller reports it
            break
        if stop:
            result.stop_reason, result.stop_message = "callback", f"stopped by on_epoch after epoch {epoch}"
            break
    return result


@dataclass
class _EpochStats:
    loss: float
    grad_norm: float
    grad_norm_max: float
    images: int
    bad_step: int | None  # 1-based step whose loss was NaN/inf, if any
    first_loss: float  # loss of the epoch's first step, before its update
    evidence: TrainValues  # unet.evidence.TrainEvidence.result()


@dataclass
class _Scores:
    dice: float
    iou: float
    shares: ShareValues  # unet.evidence.foreground_shares


class _Amp:
    """Autocast and gradient scaling on CUDA; a no-op on CPU."""

    def __init__(self, device: torch.device, *, enabled: bool) -> None:
        self.enabled = enabled and device.type == "cuda"
        self.dtype = torch.bfloat16
        if self.enabled and not torch.cuda.is_bf16_supported():
            self.dtype = torch.float16
        # float16 needs loss scaling to keep small gradients; bfloat16 has float32's range.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)
        self.device_type = device.type

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def _loaders(
    config: TrainConfig, train: Dataset, val: Dataset, device: torch.device
) -> tuple[DataLoader, DataLoader]:
    if len(train) == 0 or len(val) == 0:  # type: ignore[arg-type]
        raise ConfigError(f"training needs images in both sets but got {len(train)} train and {len(val)} val")  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(config.seed)
    pin = device.type == "cuda"
    # Dropping a last batch of one image keeps batch norm defined; otherwise keep every image.
    drop_last = len(train) % config.batch_size == 1 and len(train) > config.batch_size  # type: ignore[arg-type]
    common: dict[str, Any] = {
        "num_workers": config.num_workers,
        "pin_memory": pin,
        "persistent_workers": config.num_workers > 0,
    }
    train_loader = DataLoader(
        train,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=_seed_worker,
        **common,
    )
    val_loader = DataLoader(val, batch_size=config.batch_size, shuffle=False, **common)
    return train_loader, val_loader


def _check_data(config: TrainConfig, train: Dataset) -> None:
    """The model's channels and classes must fit the data; say which setting to change."""
    channels = getattr(train, "in_channels", None)
    if channels is not None and channels != config.model.in_channels:
        raise ConfigError(
            f"model.in_channels is {config.model.in_channels} but the images have {channels} channel(s): "
            f"set model.in_channels={channels}"
        )
    classes = getattr(train, "num_classes", None)
    if classes is not None and classes != config.model.num_classes:
        raise ConfigError(
            f"model.num_classes is {config.model.num_classes} but the masks have num_classes={classes}: "
            f"set model.num_classes={classes}"
        )


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _train_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    amp: _Amp,
    loader: DataLoader,
    config: TrainConfig,
    device: torch.device,
    memory_format: torch.memory_format,
    on_batch: OnBatch | None,
) -> _EpochStats:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    norm_sum = torch.zeros((), dtype=torch.float64, device=device)
    norm_max = torch.zeros((), dtype=torch.float64, device=device)
    steps = images = 0
    total = len(loader)
    bad_step: int | None = None
    first_loss: torch.Tensor | None = None
    evidence = TrainEvidence(model, config.model.num_classes)
    for images_batch, masks in loader:
        images_batch = images_batch.to(device, non_blocking=True, memory_format=memory_format)
        masks = masks.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with amp.autocast():
            logits = model(images_batch)
        loss = criterion(logits.float(), masks)
        evidence.after_forward(images_batch, logits, masks)
        steps += 1
        images += images_batch.shape[0]
        if first_loss is None:
            first_loss = loss.detach()
        if not torch.isfinite(loss):
            loss_sum += loss.detach()
            bad_step = steps
            break
        amp.scaler.scale(loss).backward()
        amp.scaler.unscale_(optimizer)
        evidence.after_backward()
        norm = _grad_norm(params, config.grad_clip)
        amp.scaler.step(optimizer)
        amp.scaler.update()
        loss_sum += loss.detach()
        norm_sum += norm
        norm_max = torch.maximum(norm_max, norm)
        if on_batch is not None:
            on_batch(steps, total)
    good_steps = steps - (1 if bad_step else 0)
    return _EpochStats(
        loss=float(loss_sum) / max(steps, 1),
        grad_norm=float(norm_sum) / good_steps if good_steps else float("nan"),
        grad_norm_max=float(norm_max) if good_steps else float("nan"),
        images=images,
        bad_step=bad_step,
        first_loss=float(first_loss) if first_loss is not None else float("nan"),
        evidence=evidence.result(),
    )


def _grad_norm(params: list[nn.Parameter], clip: float | None) -> torch.Tensor:
    """The global gradient L2 norm before clipping; clips to ``clip`` when it is set."""
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(params, clip).detach().double()
    # Without clipping, only measure: clip_grad_norm_ would also rescale every gradient by 1.0.
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads).detach().double()


@torch.inference_mode()
def _validate(
    model: nn.Module,
    criterion: nn.Module,
    amp: _Amp,
    loader: DataLoader,
    device: torch.device,
    memory_format: torch.memory_format,
    num_classes: int,
) -> tuple[float, _Scores]:
    model.eval()
    metrics = SegmentationMetrics(num_classes=num_classes)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    batches = 0
    for images_batch, masks in loader:
        images_batch = images_batch.to(device, non_blocking=True, memory_format=memory_format)
        masks = masks.to(device, non_blocking=True)
        with amp.autocast():
            logits = model(images_batch)
        logits = logits.float()
        loss_sum += criterion(logits, masks)
        metrics.update(logits, masks)
        batches += 1
    scores = metrics.compute()
    dice, iou = scores["dice"], scores["iou"]
    assert isinstance(dice, float) and isinstance(iou, float)  # the means; per-class scores are dicts
    return float(loss_sum) / max(batches, 1), _Scores(dice, iou, foreground_shares(scores))


def _divergence(
    record: EpochRecord, first_loss: float | None, factor: float, bad_step: int | None
) -> str | None:
    """A one-line reason when the epoch shows divergence, else None."""
    if bad_step is not None:
        where = f"at epoch {record.epoch}, step {bad_step}"
        return f"train loss became {record.train_loss} {where}: lower the learning rate"
    if not math.isfinite(record.val_loss):
        return f"val loss became {record.val_loss} at epoch {record.epoch}: lower the learning rate"
    if first_loss is None:
        return None
    for name, value in (("train", record.train_loss), ("val", record.val_loss)):
        if exceeds(value, first_loss, factor):
            return (
                f"{name} loss {value:.4g} at epoch {record.epoch} is over {factor:g}x the initial loss "
                f"{first_loss:.4g}: lower the learning rate"
            )
    return None
