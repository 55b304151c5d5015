"""Dice and IoU over a whole validation set, from pixel counts accumulated batch by batch.

Predictions: for binary segmentation (one logit) a pixel is foreground when its logit is > 0, i.e. its
sigmoid is > 0.5 (a logit of exactly 0 is background); for multi-class, the argmax over classes.

Scores are ratios of counts summed over every pixel of every image seen since ``reset()``, never
means of per-batch or per-image scores, so they do not depend on how the set is split into batches:
``dice = 2 TP / (2 TP + FP + FN)`` and ``iou = TP / (TP + FP + FN)`` per class.

Empty-mask rule, per class over the whole set:

- no pixel of the class in the target nor in the prediction (TP = FP = FN = 0): the ratio is 0/0 and
  the class scores 1.0 (nothing to find, nothing predicted). This is the only undefined case;
- absent from the target but predicted somewhere (FP > 0): 0.0, the formula's value;
- present in the target but never predicted (FN > 0, TP = 0): 0.0, the formula's value.

The summary ``dice`` and ``iou`` are the mean over the foreground classes (class 1 for binary, 1..C-1
for multi-class); background is excluded because it is most pixels and near-perfect from the start.
Every foreground class counts in the mean, empty ones too (with 1.0), so the mean is always over the
same classes and stays comparable between epochs and trials. The per-class results include background.
"""

from __future__ import annotations

import torch

from unet.errors import ConfigError

# --- pure functions ---------------------------------------------------------------------------------


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Class-index predictions: ``logit > 0`` for one channel, argmax over channels otherwise.

    Shape:
        logits (N, C, H, W) -> (N, H, W) int64.
    """
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Pixel counts of (target class, predicted class) pairs, on the inputs' device without a sync.

    Values must lie in ``0..num_classes-1``; on CPU an out-of-range value raises ``IndexError``.

    Shape:
        pred, target (*) int64 -> (num_classes, num_classes) int64, rows target, columns prediction.
    """
    pairs = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=pairs.device)
    counts.index_add_(0, pairs, torch.ones_like(pairs))
    return counts.view(num_classes, num_classes)


def dice_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """Dice ``2 TP / (2 TP + FP + FN)`` element-wise, 1.0 where TP = FP = FN = 0 (see the module doc).

    Shape:
        tp, fp, fn (C,) counts -> (C,) float64.
    """
    return _ratio(2 * tp.double(), 2 * tp.double() + fp + fn)


def iou_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """IoU (Jaccard) ``TP / (TP + FP + FN)`` element-wise, 1.0 where TP = FP = FN = 0.

    Shape:
        tp, fp, fn (C,) counts -> (C,) float64.
    """
    return _ratio(tp.double(), tp.double() + fp + fn)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    empty = denominator == 0
    return torch.where(empty, 1.0, numerator / denominator.masked_fill(empty, 1.0))


# --- accumulator ------------------------------------------------------------------------------------


class SegmentationMetrics:
    """Accumulates a confusion matrix over batches; ``compute()`` gives Dice and IoU over all of them.

    Counts stay on the logits' device as tensors; only ``compute()`` copies them to the host.

    Args:
        num_classes: C of the logits (1 for binary).

    Example:
        >>> metrics = SegmentationMetrics(num_classes=1)
        >>> for images, masks in loader:
        ...     metrics.update(model(images), masks)
        >>> metrics.compute()["dice"]
    """

    def __init__(self, num_classes: int) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be an integer >= 1 but got {num_classes!r}")
        self.num_classes = num_classes
        # Binary predictions and targets are class indices 0/1: two rows and columns.
        self._size = max(2, num_classes)
        self._confusion: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._confusion = None

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch's pixel counts.

        Shape:
            logits (N, C, H, W), target (N, H, W) integer class indices.
        """
        if (
            logits.ndim != 4
            or logits.shape[1] != self.num_classes
            or target.shape != (logits.shape[0], *logits.shape[2:])
        ):
            raise ValueError(
                f"metrics expect logits (N, {self.num_classes}, H, W) and target (N, H, W) but got "
                f"logits {tuple(logits.shape)} and target {tuple(target.shape)}"
            )
        if target.is_floating_point():
            raise ValueError(f"target must hold integer class indices but has dtype {target.dtype}")
        batch = confusion_matrix(predict(logits), target, self._size)
        self._confusion = batch if self._confusion is None else self._confusion + batch

    def compute(self) -> dict[str, float | dict[int, float]]:
        """Scores over every batch since the last ``reset()``.

        Returns:
            ``dice`` and ``iou``: means over the foreground classes; ``per_class_dice`` and
            ``per_class_iou``: class index (background 0 included) -> score; ``pred_share`` and
            ``true_share``: class index -> share of all pixels predicted as / labelled with the class.

        Raises:
            RuntimeError: no batch was added, so there is nothing to score.
        """
        if self._confusion is None:
            raise RuntimeError("SegmentationMetrics.compute() called before any update()")
        confusion = self._confusion.cpu()
        tp = confusion.diagonal()
        fp = confusion.sum(dim=0) - tp
        fn = confusion.sum(dim=1) - tp
        dice, iou = dice_from_counts(tp, fp, fn), iou_from_counts(tp, fp, fn)
        total = max(int(confusion.sum()), 1)
        return {
            "dice": dice[1:].mean().item(),
            "iou": iou[1:].mean().item(),
            "per_class_dice": dict(enumerate(dice.tolist())),
            "per_class_iou": dict(enumerate(iou.tolist())),
            "pred_share": {c: int(n) / total for c, n in enumerate(confusion.sum(dim=0).tolist())},
            "true_share": {c: int(n) / total for c, n in enumerate(confusion.sum(dim=1).tolist())},
        }
