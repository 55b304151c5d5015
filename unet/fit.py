"""The training loop: ``fit(config, train, val, on_epoch)`` trains one U-Net and returns its history.

The loop is deliberately plain (one optimizer step per batch, validation after every epoch) so that its
speed stays within a few percent of a bare PyTorch loop (``bench/throughput/train_loop.py`` measures it).
Non-finite losses stop the run with a reason instead of training on; ``on_epoch`` may stop it too, by
returning True or by raising (the search service raises its own stop exception from it).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import Dataset

from unet.config import TrainConfig
from unet.device import Precision, prepare_model, resolve_device, seed_everything
from unet.divergence import exceeds
from unet.epoch import AugmentBatch, OnBatch, Scores, train_epoch
from unet.errors import ConfigError
from unet.evidence import foreground_shares
from unet.history import EpochRecord
from unet.loading import make_train_loader
from unet.losses import build_loss
from unet.model import build_model
from unet.optim import build_optimizer, build_scheduler, current_lr
from unet.train_state import LastState, TrainState, capture_rng, restore_rng, to_cpu
from unet.validation import evaluate

if TYPE_CHECKING:  # the data package (albumentations, OpenCV) is not needed to train on tensors
    from unet.data.device_geometry import DeviceGeometry

logger = logging.getLogger(__name__)

OnEpoch = Callable[[EpochRecord], bool | None]

# Also the public names of this module, for callers that import them from here.
__all__ = ["FitResult", "OnBatch", "OnEpoch", "check_config", "fit", "resolve_device", "seed_everything"]


@dataclass
class FitResult:
    """What ``fit`` returns: the model as trained, the per-epoch history, and why it stopped early (if so)."""

    model: nn.Module
    history: list[EpochRecord] = field(default_factory=list)
    stop_reason: str | None = None  # None (ran all epochs), "diverged" or "callback"
    stop_message: str | None = None  # one line saying what made it stop
    device: str = "cpu"
    best_state: dict[str, torch.Tensor] | None = None  # CPU copy of the best epoch's weights (val Dice)
    best_epoch: int | None = None  # the epoch ``best_state`` is from (``best.epoch``)

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


def fit(
    config: TrainConfig,
    train: Dataset,
    val: Dataset,
    on_epoch: OnEpoch | None = None,
    *,
    on_batch: OnBatch | None = None,
    model: nn.Module | None = None,
    resume: TrainState | None = None,
    last_state: LastState | None = None,
) -> FitResult:
    """Train a U-Net on ``train`` and validate it on ``val`` after every epoch.

    Args:
        config: the training settings; the model's in_channels/num_classes must match the data.
        train: items ``(image float32 (C, H, W), mask int64 (H, W))``, equal sizes within a batch.
        val: items of whole images, any size, evaluated one by one without augmentation
            (``unet.validation.evaluate``; its ``patch_size`` attribute, if any, tiles larger images).
        on_epoch: called with each epoch's record; returning True stops training after that epoch.
        on_batch: called after each training step with (step, steps per epoch), e.g. for a progress bar.
        model: an existing model to train instead of building one from ``config.model``.
        resume: a state ``last_state`` gave (``unet.train_state``): train on from the epoch after its
            epoch, with the same config, as if the run had never stopped; the history returned holds the
            earlier epochs too, and ``on_epoch`` sees only the new ones.
        last_state: bound to the loop, so that the caller can take the last finished epoch's state after
            ``fit`` returned or ``on_epoch`` raised (e.g. to pause a trial and continue it later).

    Returns:
        The trained model (on its device), its history, and the reason it stopped early, if it did.

    Raises:
        ConfigError: a name or combination in the config is invalid (before any training step), or
            ``resume`` is from an epoch at or past ``config.epochs``.
    """
    check_config(config)
    _check_data(config, train)
    if resume is not None and resume.epoch >= config.epochs:
        raise ConfigError(
            f"the state to resume is from epoch {resume.epoch} but config.epochs is {config.epochs}: "
            f"set epochs above {resume.epoch} to train on"
        )
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model = model if model is not None else build_model(config.model)
    if resume is not None:
        model.load_state_dict(resume.model)
    base_model = model  # uncompiled, for state dicts without torch.compile's key prefix
    channels_last = config.channels_last if config.channels_last is not None else True
    model, memory_format = prepare_model(
        model, device, channels_last=channels_last, compile_model=config.compile
    )
    criterion = build_loss(config.loss, num_classes=config.model.num_classes, pos_weight=config.pos_weight)
    criterion = criterion.to(device)
    optimizer = build_optimizer(model.parameters(), config)
    scheduler = build_scheduler(optimizer, config)
    precision = Precision(device, enabled=config.mixed_precision)
    train_loader = make_train_loader(config, train, val, device)
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        scheduler.load_state_dict(resume.scheduler)
        precision.scaler.load_state_dict(resume.scaler)
    logger.info(
        "training on %s, %s, %d loader worker(s)", device, precision.describe(), train_loader.num_workers
    )
    result = FitResult(model=model, device=str(device))
    first_loss: float | None = resume.first_loss if resume is not None else None
    if resume is not None:
        result.history = [EpochRecord(**r) for r in resume.history]
        result.best_state, result.best_epoch = resume.best_state, resume.best_epoch
    # Whole-image validation of ``model`` on ``val``: once before the first step, then after every epoch.
    validate = functools.partial(
        evaluate,
        model,
        val,
        criterion=criterion,
        num_classes=config.model.num_classes,
        device=device,
        memory_format=memory_format,
        autocast=precision.autocast,
    )
    # The untrained model's val loss: a loss that exploded is measured against it (a healthy curve starts
    # at about this value and falls; one 100x above it after epoch 1 has diverged however early the trial
    # was stopped). One validation pass and no random numbers, so training after it is the same.
    if resume is not None:
        untrained_loss = resume.initial_val_loss
    else:
        untrained_loss = validate().loss if len(val) else float("nan")  # type: ignore[arg-type]

    augment, augment_generator = _device_augmentation(train, device, config.seed)
    loader_generator: torch.Generator = train_loader.generator
    if resume is not None:
        restore_rng(resume.rng, loader_generator, augment_generator)

    def take_state(rng: dict[str, object]) -> TrainState:
        return TrainState(
            epoch=result.history[-1].epoch,
            model=to_cpu(base_model.state_dict()),
            optimizer=to_cpu(optimizer.state_dict()),
            scheduler=to_cpu(scheduler.state_dict()),
            scaler=precision.scaler.state_dict(),
            rng=rng,
            history=[r.to_dict() for r in result.history],
            best_state=result.best_state,
            best_epoch=result.best_epoch,
            first_loss=first_loss,
            initial_val_loss=untrained_loss,
        )

    for epoch in range(resume.epoch + 1 if resume is not None else 1, config.epochs + 1):
        started = time.perf_counter()
        lr = current_lr(optimizer)
        train_stats = train_epoch(
            model,
            criterion,
            optimizer,
            precision,
            train_loader,
            config,
            device,
            memory_format,
            on_batch,
            augment,
        )
        train_seconds = time.perf_counter() - started
        val_started = time.perf_counter()
        evaluation = validate()
        val_seconds = time.perf_counter() - val_started
        val_loss = evaluation.loss
        metrics = Scores(evaluation.dice, evaluation.iou, foreground_shares(evaluation.scores))
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
            initial_val_loss=untrained_loss,
            train_s=train_stats.seconds - train_stats.data_wait_s - train_stats.evidence_s,
            val_s=val_seconds,
            evidence_s=train_stats.evidence_s,
            data_wait_s=train_stats.data_wait_s,
        )
        result.history.append(record)
        _keep_if_best(result, model, record)
        if first_loss is None and math.isfinite(train_stats.first_loss):
            first_loss = train_stats.first_loss
        diverged = _divergence(record, first_loss, config.divergence_factor, train_stats.bad_step)
        if last_state is not None:  # the random states now, before on_epoch runs; the rest when taken
            last_state.bind(functools.partial(take_state, capture_rng(loader_generator, augment_generator)))
        stop = on_epoch is not None and bool(on_epoch(record))
        if diverged:
            result.stop_reason, result.stop_message = "diverged", diverged
            logger.info("training stopped: %s", diverged)  # the caller reports it
            break
        if stop:
            result.stop_reason, result.stop_message = "callback", f"stopped by on_epoch after epoch {epoch}"
            break
    return result


def _keep_if_best(result: FitResult, model: nn.Module, record: EpochRecord) -> None:
    """Copy the weights to the CPU when this epoch's val Dice beats every earlier one (first of equals)."""
    best = result.best
    if best is not None and best.epoch == record.epoch:
        result.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        result.best_epoch = record.epoch


def _device_augmentation(
    train: Dataset, device: torch.device, seed: int
) -> tuple[AugmentBatch | None, torch.Generator | None]:
    """The data's device-side augmentation (``device_geometry``) bound to a seeded generator, and that
    generator; (None, None) without one."""
    geometry: DeviceGeometry | None = getattr(train, "device_geometry", None)
    if geometry is None:
        return None, None
    generator = torch.Generator(device=device).manual_seed(seed)
    logger.info("flips and 90-degree rotations run on %s", device)
    return functools.partial(geometry.apply, generator=generator), generator


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
