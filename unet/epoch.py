"""One training epoch and one validation pass, the inner loops of ``fit``.

Everything accumulates on the device (losses, gradient norms, counts) and is read back once per epoch,
so no step waits for the host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from unet.config import TrainConfig
from unet.device import Precision
from unet.evidence import ShareValues, TrainEvidence, TrainValues

logger = logging.getLogger(__name__)

OnBatch = Callable[[int, int], None]
# Augments a batch already on the device: (images, masks) -> (images, masks).
AugmentBatch = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EpochStats:
    """What one training epoch measured."""

    loss: float  # mean training loss over the steps taken
    grad_norm: float  # mean gradient norm over the steps that updated the weights (NaN: none did)
    grad_norm_max: float  # largest gradient norm of those steps
    images: int  # images trained on
    bad_step: int | None  # 1-based step whose loss was NaN/inf, if any
    first_loss: float  # loss of the epoch's first step, before its update
    evidence: TrainValues  # unet.evidence.TrainEvidence.result()
    skipped_steps: int = 0  # float16 steps the gradient scaler skipped for overflowing gradients


@dataclass
class Scores:
    """What one validation pass measured besides the loss."""

    dice: float
    iou: float
    shares: ShareValues  # unet.evidence.foreground_shares


def train_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    loader: DataLoader,
    config: TrainConfig,
    device: torch.device,
    memory_format: torch.memory_format,
    on_batch: OnBatch | None = None,
    augment: AugmentBatch | None = None,
) -> EpochStats:
    """Train one pass over ``loader``; stops at the first step whose loss is not finite.

    ``augment`` (the device-side geometric augmentation, when the data asks for it) runs on each batch
    after it reached the device.
    """
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    norm_sum = torch.zeros((), dtype=torch.float64, device=device)
    norm_max = torch.zeros((), dtype=torch.float64, device=device)
    skipped = torch.zeros((), dtype=torch.int64, device=device)
    steps = images = 0
    total = len(loader)
    bad_step: int | None = None
    first_loss: torch.Tensor | None = None
    evidence = TrainEvidence(model, config.model.num_classes)
    for images_batch, masks in loader:
        images_batch = images_batch.to(device, non_blocking=True, memory_format=memory_format)
        masks = masks.to(device, non_blocking=True)
        if augment is not None:
            images_batch, masks = augment(images_batch, masks)
            images_batch = images_batch.contiguous(memory_format=memory_format)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
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
        precision.scaler.scale(loss).backward()
        precision.scaler.unscale_(optimizer)
        evidence.after_backward()
        norm = grad_norm(params, config.grad_clip)
        precision.scaler.step(optimizer)
        precision.scaler.update()
        loss_sum += loss.detach()
        counted = step_counts(norm, scaling=precision.scaling)
        norm_sum += torch.where(counted, norm, 0.0)
        norm_max = torch.where(counted, torch.maximum(norm_max, norm), norm_max)
        skipped += (~counted).long()
        if on_batch is not None:
            on_batch(steps, total)
    n_skipped = int(skipped)
    if n_skipped:
        logger.info("%d of %d step(s) skipped by the float16 gradient scaler (overflow)", n_skipped, steps)
    updated = steps - (1 if bad_step else 0) - n_skipped
    return EpochStats(
        loss=float(loss_sum) / max(steps, 1),
        grad_norm=float(norm_sum) / updated if updated else float("nan"),
        grad_norm_max=float(norm_max) if updated else float("nan"),
        images=images,
        bad_step=bad_step,
        first_loss=float(first_loss) if first_loss is not None else float("nan"),
        evidence=evidence.result(),
        skipped_steps=n_skipped,
    )


def step_counts(norm: torch.Tensor, *, scaling: bool) -> torch.Tensor:
    """Whether a step's gradient norm counts in the epoch's statistics (a bool tensor, on the device).

    Under a gradient scaler, a non-finite norm means scaled gradients overflowed: the scaler skips that
    step and lowers its scale, the weights are untouched, and the norm says nothing about the model, so it
    is left out (and the step counted as skipped, not as divergence). Without a scaler every step updates
    the weights and counts, a non-finite norm included: then the run is diverging and the record says so.
    """
    if not scaling:
        return torch.ones((), dtype=torch.bool, device=norm.device)
    return torch.isfinite(norm)


def grad_norm(params: list[nn.Parameter], clip: float | None) -> torch.Tensor:
    """The global gradient L2 norm before clipping; clips to ``clip`` when it is set."""
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(params, clip).detach().double()
    # Without clipping, only measure: clip_grad_norm_ would also rescale every gradient by 1.0.
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads).detach().double()
