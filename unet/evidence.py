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
host.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, TypedDict

import torch
from torch import nn

from unet.metrics import SegmentationMetrics


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

    Args:
        model: the model being trained (its first and last convolutions are watched).
        num_classes: C of the logits (1 for binary).
    """

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        self._first, self._last = end_layers(model)
        self._metrics = SegmentationMetrics(num_classes=num_classes)
        self._sums: torch.Tensor | None = None  # [first grad, last grad, sum x, sum x^2, count, max |x|]
        self._grad_steps = 0

    @torch.no_grad()
    def after_forward(self, images: torch.Tensor, logits: torch.Tensor, masks: torch.Tensor) -> None:
        """Count one step's predictions and inputs (call before the optimizer updates the weights)."""
        self._metrics.update(logits.detach().float(), masks)
        x = images.detach().double()
        stats = torch.stack(
            [
                x.new_zeros(()),
                x.new_zeros(()),
                x.sum(),
                (x * x).sum(),
                x.new_tensor(float(x.numel())),
                x.abs().max(),
            ]
        )
        if self._sums is None:
            self._sums = stats
        else:
            self._sums[2:5] += stats[2:5]
            self._sums[5] = torch.maximum(self._sums[5], stats[5])

    @torch.no_grad()
    def after_backward(self) -> None:
        """Add the first and last layers' gradient norms (call after unscaling, before clipping)."""
        if self._sums is None or self._first is None or self._last is None:
            return
        for slot, weight in ((0, self._first), (1, self._last)):
            if weight.grad is not None:
                self._sums[slot] += weight.grad.detach().double().norm()
        self._grad_steps += 1

    def result(self) -> TrainValues:
        """``train_dice``, ``grad_norm_first``, ``grad_norm_last``, ``input_mean``, ``input_std``,
        ``input_max``; NaN for what no step measured."""
        nan = math.nan
        if self._sums is None:
            return TrainValues(
                train_dice=nan,
                grad_norm_first=nan,
                grad_norm_last=nan,
                input_mean=nan,
                input_std=nan,
                input_max=nan,
            )
        first, last, total, squares, count, largest = self._sums.tolist()
        dice = self._metrics.compute()["dice"]
        assert isinstance(dice, float)  # internal: the summary Dice is a float, per-class ones are dicts
        mean = total / count
        steps = self._grad_steps
        return TrainValues(
            train_dice=dice,
            grad_norm_first=first / steps if steps else nan,
            grad_norm_last=last / steps if steps else nan,
            input_mean=mean,
            input_std=math.sqrt(max(squares / count - mean * mean, 0.0)),
            input_max=largest,
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
