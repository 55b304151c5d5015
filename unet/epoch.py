"""One training epoch and one validation pass, the inner loops of ``fit``.

Everything accumulates on the device (losses, gradient norms, counts, the first step whose loss was not
finite) and is read back once every ``SYNC_EVERY`` steps and at the end of the epoch, so on an accelerator
no step waits for the host: a step that reads a tensor's value makes the host wait until the device has
finished all the work queued before it. A non-finite loss therefore stops the epoch at the next read, up
to ``SYNC_EVERY - 1`` steps later; the record still names the first bad step and counts no loss after it.

The epoch's time is split as it goes (:class:`EpochStats`): seconds waiting for the loader, seconds
gathering evidence and gradient statistics, and the rest, the training steps themselves. On an
accelerator the host runs ahead of the device, so the evidence seconds are the host's share (launching
the work), and the device's share of them shows in the step time.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from unet.config import TrainConfig
from unet.device import Precision
from unet.evidence import ShareValues, TrainEvidence, TrainValues, sampled_steps

logger = logging.getLogger(__name__)

# Steps between reads of the on-device finite-loss flag: one host sync per this many steps, and at most
# this many minus one steps trained after a non-finite loss before the epoch stops.
SYNC_EVERY = 32

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
    seconds: float = 0.0  # wall time of the pass, the final read of its statistics included
    data_wait_s: float = 0.0  # of which: waiting for the loader's next batch
    evidence_s: float = 0.0  # of which: gathering evidence and gradient statistics (host time)


@dataclass
class Scores:
    """What one validation pass measured besides the loss."""

    dice: float
    iou: float
    shares: ShareValues  # unet.evidence.foreground_shares


class Batches(Protocol):
    """What an epoch trains on: a DataLoader, or batches already in memory (``bench.pipeline``'s)."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


def train_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    loader: Batches,
    config: TrainConfig,
    device: torch.device,
    memory_format: torch.memory_format,
    on_batch: OnBatch | None = None,
    augment: AugmentBatch | None = None,
) -> EpochStats:
    """Train one pass over ``loader``; stops soon after the first step whose loss is not finite.

    ``augment`` (the device-side geometric augmentation, when the data asks for it) runs on each batch
    after it reached the device. The training Dice and input statistics come from
    ``unet.evidence.EVIDENCE_BATCHES`` batches spread over the epoch (all of them in shorter epochs);
    gradient norms from every step.
    """
    started = time.perf_counter()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    norm_sum = torch.zeros((), dtype=torch.float64, device=device)
    norm_max = torch.zeros((), dtype=torch.float64, device=device)
    skipped = torch.zeros((), dtype=torch.int64, device=device)
    bad_at = torch.zeros((), dtype=torch.int64, device=device)  # first step with a non-finite loss; 0: none
    steps = 0
    images_seen: list[int] = [0]  # images trained on after each step (index = steps)
    total = len(loader)
    sampled = sampled_steps(total)
    first_loss: torch.Tensor | None = None
    evidence = TrainEvidence(model, config.model.num_classes)
    clock = _Clock()
    for images_batch, masks in clock.wait(loader):
        steps += 1
        images_batch = images_batch.to(device, non_blocking=True, memory_format=memory_format)
        masks = masks.to(device, non_blocking=True)
        if augment is not None:
            images_batch, masks = augment(images_batch, masks)
            images_batch = images_batch.contiguous(memory_format=memory_format)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            logits = model(images_batch)
        loss = criterion(logits.float(), masks)
        images_seen.append(images_seen[-1] + images_batch.shape[0])
        if first_loss is None:
            first_loss = loss.detach()
        # On the device: the first step with a non-finite loss; that step's loss still counts, later
        # steps (trained on the weights it wrecked, until the next read) add nothing to the statistics.
        clean_before = bad_at == 0
        bad_at = torch.where(clean_before & ~torch.isfinite(loss.detach()), steps, bad_at)
        clean = bad_at == 0
        loss_sum += torch.where(clean_before, loss.detach().double(), 0.0)
        if steps in sampled:
            with clock.evidence():
                evidence.after_forward(images_batch, logits, masks, clean_before)
        precision.scaler.scale(loss).backward()
        precision.scaler.unscale_(optimizer)
        with clock.evidence():
            evidence.after_backward(clean)
            norm = grad_norm(params, config.grad_clip)
        precision.scaler.step(optimizer)
        precision.scaler.update()
        with clock.evidence():
            fine = step_counts(norm, scaling=precision.scaling)
            counted = fine & clean
            norm_sum += torch.where(counted, norm, 0.0)
            norm_max = torch.where(counted, torch.maximum(norm_max, norm), norm_max)
            skipped += (~fine & clean).long()
        if on_batch is not None:
            on_batch(steps, total)
        if steps % SYNC_EVERY == 0 and int(bad_at):
            break
    bad = int(bad_at)
    bad_step = bad if bad else None
    counted_steps = bad if bad else steps
    n_skipped = int(skipped)
    if n_skipped:
        logger.info("%d of %d step(s) skipped by the float16 gradient scaler (overflow)", n_skipped, steps)
    updated = counted_steps - (1 if bad_step else 0) - n_skipped
    stats = EpochStats(
        loss=float(loss_sum) / max(counted_steps, 1),
        grad_norm=float(norm_sum) / updated if updated else float("nan"),
        grad_norm_max=float(norm_max) if updated else float("nan"),
        images=images_seen[counted_steps],
        bad_step=bad_step,
        first_loss=float(first_loss) if first_loss is not None else float("nan"),
        evidence=evidence.result(),
        skipped_steps=n_skipped,
    )
    stats.seconds = time.perf_counter() - started
    stats.data_wait_s, stats.evidence_s = clock.waited, clock.gathering
    return stats


class _Clock:
    """Host seconds of one epoch spent waiting for the loader and gathering evidence."""

    def __init__(self) -> None:
        self.waited = 0.0
        self.gathering = 0.0

    def wait(self, loader: Batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The loader's batches, timing each wait for the next one."""
        batches = iter(loader)
        while True:
            started = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                self.waited += time.perf_counter() - started
            yield batch

    @contextlib.contextmanager
    def evidence(self) -> Iterator[None]:
        """``with clock.evidence():`` adds the block's seconds to ``gathering``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.gathering += time.perf_counter() - started


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
