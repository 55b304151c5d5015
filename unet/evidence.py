"""Evidence for diagnosing a run, gathered during an epoch from what training computes anyway.

``fit`` records, besides losses and Dice, what tells the causes of a bad run apart:

- the training steps' own Dice (from the logits of the forward pass each step already made, before its
  update): a model that fits its training data but not validation overfits, one that fits neither
  learns nothing;
- the gradient norms of the first and last layers (before clipping): vanishing gradients reach the first
  layer as ~0 while the last one still gets some;
- the intensity of the inputs the model saw (mean, standard deviation, largest absolute value): raw
  0..255 images are visible at once;
- on validation, the share of pixels predicted and truly foreground (:func:`foreground_shares`): a model
  that predicts background only, one that floods the image and one that finds the right amount in the
  wrong place all score Dice near 0.

Everything stays on the device as tensors until :meth:`TrainEvidence.result`, so no step waits for the
host. The training Dice and the input statistics are the costlier part (a confusion matrix over every
pixel of a batch, the inputs' moments), so they come from at most ``EVIDENCE_BATCHES`` batches spread
evenly over the epoch (:func:`sampled_steps`); the gradient norms cost a few kernels per step and come
from every step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, TypedDict

import torch
from torch import nn

from unet.metrics import confusion_matrix, dice_from_counts, predict

# Batches per epoch whose predictions and inputs feed the training Dice and the input statistics. Every
# batch of an epoch of up to this many steps counts (the diagnosis benchmark's runs have 4 to 12); a
# longer epoch is sampled at even intervals, so its cost stays bounded.
EVIDENCE_BATCHES = 16


class TrainValues(TypedDict):
    """The training side's evidence, under ``EpochRecord``'s field names."""

    train_dice: float
    grad_norm_first: float
    grad_norm_last: float
    input_mean: float
    input_std: float
    input_max: float


class ShareValues(TypedDict):
    """The validation foreground shares, under ``EpochRecord``'s field names."""

    val_pred_fg: float
    val_true_fg: float
    val_class_shares: str


def sampled_steps(total: int, batches: int = EVIDENCE_BATCHES) -> frozenset[int]:
    """The 1-based steps of a ``total``-step epoch that feed the sampled evidence: all of them up to
    ``batches``, else ``batches`` steps at even intervals from the first."""
    if total <= batches:
        return frozenset(range(1, total + 1))
    return frozenset(1 + i * total // batches for i in range(batches))


def end_layers(model: nn.Module) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The weights of the model's first and last convolution (any 4-D weight), or None without one."""
    weights: list[torch.Tensor] = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim == 4:
            weights.append(weight)
    return (weights[0], weights[-1]) if weights else (None, None)


class TrainEvidence:
    """Accumulates one epoch's training-side evidence; create one per epoch.

    Each call takes ``keep``, a bool tensor on the device: a step with ``keep`` false (one after a
    non-finite loss, whose weights are no longer the run's) adds nothing, without a host sync.

    Args:
        model: the model being trained (its first and last convolutions are watched).
        num_classes: C of the logits (1 for binary).
    """

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        self._first, self._last = end_layers(model)
        self._classes = max(2, num_classes)  # binary predictions and targets are 0/1: two classes
        self._confusion: torch.Tensor | None = None
        # [first grad, last grad, gradient steps, sum x, sum x^2, count, max |x|]
        self._sums: torch.Tensor | None = None

    def _totals(self, like: torch.Tensor) -> torch.Tensor:
        if self._sums is None:
            self._sums = torch.zeros(7, dtype=torch.float64, device=like.device)
        return self._sums

    @torch.no_grad()
    def after_forward(
        self,
        images: torch.Tensor,
        logits: torch.Tensor,
        masks: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> None:
        """Count one step's predictions and inputs (call before the optimizer updates the weights)."""
        confusion = confusion_matrix(predict(logits.detach().float()), masks, self._classes)
        # The batch's moments in float32 (pairwise sums: ~1e-7 relative), accumulated in float64: a
        # float64 copy of every input pixel cost as much as the rest of the evidence together.
        x = images.detach().float()
        sums = self._totals(x)
        keep = keep if keep is not None else torch.ones((), dtype=torch.bool, device=x.device)
        confusion = confusion * keep.long()
        self._confusion = confusion if self._confusion is None else self._confusion + confusion
        moments = torch.stack([x.sum(), x.square().sum(), x.new_full((), float(x.numel())), x.abs().amax()])
        moments = torch.where(keep, moments.double(), 0.0)  # not a product: NaN inputs times 0 stay NaN
        sums[3:6] += moments[:3]
        sums[6] = torch.maximum(sums[6], moments[3])

    @torch.no_grad()
    def after_backward(self, keep: torch.Tensor | None = None) -> None:
        """Add the first and last layers' gradient norms (call after unscaling, before clipping)."""
        first = self._first.grad if self._first is not None else None
        last = self._last.grad if self._last is not None else None
        if first is None or last is None:
            return
        sums = self._totals(first)
        norms = torch.stack([first.detach().norm(), last.detach().norm()]).double()
        if keep is None:
            sums[0:2] += norms
            sums[2] += 1.0
        else:
            sums[0:2] += torch.where(keep, norms, 0.0)
            sums[2] += keep.double()

    def result(self) -> TrainValues:
        """``train_dice``, ``grad_norm_first``, ``grad_norm_last``, ``input_mean``, ``input_std``,
        ``input_max``; NaN for what no step measured."""
        nan = math.nan
        first, last, steps, total, squares, count, largest = (
            self._sums.tolist() if self._sums is not None else [nan, nan, 0.0, nan, nan, 0.0, nan]
        )
        dice = nan
        if self._confusion is not None and count > 0:
            confusion = self._confusion.cpu()
            tp = confusion.diagonal()
            fp, fn = confusion.sum(dim=0) - tp, confusion.sum(dim=1) - tp
            dice = float(dice_from_counts(tp, fp, fn)[1:].mean())  # mean over foreground classes
        mean = total / count if count else nan
        return TrainValues(
            train_dice=dice,
            grad_norm_first=first / steps if steps else nan,
            grad_norm_last=last / steps if steps else nan,
            input_mean=mean,
            input_std=math.sqrt(max(squares / count - mean * mean, 0.0)) if count else nan,
            input_max=largest if count else nan,
        )


def foreground_shares(scores: Mapping[str, Any]) -> ShareValues:
    """``val_pred_fg``, ``val_true_fg`` and ``val_class_shares`` from ``SegmentationMetrics.compute()``.

    The foreground shares are over all foreground classes together (the share of pixels that are not
    background), which is what tells "predicts nothing" from "floods the image" in any number of
    classes; the per-class shares go to a JSON object ``{"1": [predicted, true], ...}``.
    """
    predicted: dict[int, float] = scores["pred_share"]
    true: dict[int, float] = scores["true_share"]
    classes = sorted(c for c in predicted if c != 0)
    per_class = {str(c): [round(predicted[c], 6), round(true[c], 6)] for c in classes}
    return ShareValues(
        val_pred_fg=1.0 - predicted[0],
        val_true_fg=1.0 - true[0],
        val_class_shares=json.dumps(per_class, separators=(",", ":")),
    )
