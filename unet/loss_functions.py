"""The maths of the segmentation losses, as pure functions on tensors (``unet.losses`` wraps them).

Shapes follow the project's convention (``unet.losses``): logits (N, C, H, W), int64 class-index
targets (N, H, W); C == 1 is binary (sigmoid), C >= 2 multi-class (softmax).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def one_hot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot encoding of a class-index mask, matching the logits' layout.

    For ``num_classes == 1`` (binary) the single channel is the target itself (1 = foreground).

    Shape:
        target (N, H, W) int64 -> (N, num_classes, H, W) float32.
    """
    if num_classes == 1:
        return target.unsqueeze(1).float()
    return F.one_hot(target, num_classes).permute(0, 3, 1, 2).float()


def soft_dice_loss(
    probs: torch.Tensor,
    onehot: torch.Tensor,
    *,
    smooth: float = 1.0,
    dims: Sequence[int] = (0, 2, 3),
) -> torch.Tensor:
    """Per-class soft Dice loss ``1 - (2 * |P.T| + smooth) / (|P| + |T| + smooth)``.

    Args:
        probs: predicted probabilities (sigmoid or softmax of the logits).
        onehot: one-hot target, same shape as ``probs``.
        smooth: added to numerator and denominator; makes a class absent from both score 0 loss
            and keeps the gradient finite.
        dims: dimensions summed before the ratio; the default sums over the batch and the pixels, so
            Dice is taken over the whole batch, one value per class.

    Shape:
        probs, onehot (N, C, H, W) -> (C,) with the default ``dims``.
    """
    intersection = (probs * onehot).sum(dim=tuple(dims))
    cardinality = (probs + onehot).sum(dim=tuple(dims))
    return 1.0 - (2.0 * intersection + smooth) / (cardinality + smooth)


def focal_loss_with_logits(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | None = None,
) -> torch.Tensor:
    """Element-wise binary focal loss ``-alpha_t * (1 - p_t)**gamma * log(p_t)`` (Lin et al., 2017).

    Args:
        logits: raw scores.
        target: 0/1 targets as floats, same shape as ``logits``.
        gamma: focusing parameter; 0 gives binary cross-entropy.
        alpha: weight of the positives (negatives get ``1 - alpha``); None weighs both 1.

    Shape:
        logits, target (*) -> (*), unreduced.
    """
    log_pt = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    loss = -((1.0 - log_pt.exp()) ** gamma) * log_pt
    if alpha is not None:
        loss = loss * (alpha * target + (1.0 - alpha) * (1.0 - target))
    return loss


def softmax_focal_loss_with_logits(
    logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0
) -> torch.Tensor:
    """Pixel-wise multi-class focal loss ``-(1 - p_t)**gamma * log(p_t)``, ``p_t`` the softmax of the target.

    Shape:
        logits (N, C, H, W), target (N, H, W) int64 -> (N, H, W), unreduced.
    """
    log_pt = -F.cross_entropy(logits, target, reduction="none")
    return -((1.0 - log_pt.exp()) ** gamma) * log_pt
