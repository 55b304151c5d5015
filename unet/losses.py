"""Segmentation losses: thin ``nn.Module`` wrappers of ``unet.loss_functions``, and one registry.

Convention (the whole project): logits have shape (N, C, H, W) and targets are int64 class-index masks
of shape (N, H, W). Binary segmentation has C == 1 (one logit, sigmoid, targets in {0, 1}); multi-class
has C >= 2 (softmax, targets in 0..C-1). Losses compute in float32 so that sums over a whole batch stay
accurate under autocast.

Dice is computed over the whole batch: intersections and cardinalities are summed over N, H and W per
class before the ratio is taken, so an image with an empty mask does not score 0 or 1 on its own and
small objects weigh by their pixels, as in the Dice metric of ``unet.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from unet.errors import ConfigError
from unet.loss_functions import (
    focal_loss_with_logits,
    one_hot,
    soft_dice_loss,
    softmax_focal_loss_with_logits,
)
from unet.registry import look_up

# --- modules ----------------------------------------------------------------------------------------


class DiceLoss(nn.Module):
    """Soft Dice loss over the whole batch: sigmoid for one class, else softmax and the mean over the
    foreground classes 1..C-1 (background, usually most pixels, would make the loss look good early).

    Shape:
        logits (N, C, H, W), target (N, H, W) int64 -> scalar.
    """

    def __init__(self, num_classes: int, *, smooth: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _checked_logits(logits, target, self.num_classes)
        probs = logits.sigmoid() if self.num_classes == 1 else logits.softmax(dim=1)
        per_class = soft_dice_loss(probs, one_hot(target, self.num_classes), smooth=self.smooth)
        return per_class[0] if self.num_classes == 1 else per_class[1:].mean()


class BCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy on the single logit, mean over pixels.

    Args:
        pos_weight: weight of the foreground pixels' term (> 1 favours recall); None weighs them 1.

    Shape:
        logits (N, 1, H, W), target (N, H, W) int64 in {0, 1} -> scalar.
    """

    pos_weight: torch.Tensor | None

    def __init__(self, *, pos_weight: float | None = None) -> None:
        super().__init__()
        # A buffer follows the module across devices; not persistent, it is configuration, not state.
        weight = None if pos_weight is None else torch.tensor(float(pos_weight))
        self.register_buffer("pos_weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _checked_logits(logits, target, 1)
        return F.binary_cross_entropy_with_logits(logits, one_hot(target, 1), pos_weight=self.pos_weight)


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy, mean over pixels.

    Shape:
        logits (N, C, H, W) with C >= 2, target (N, H, W) int64 -> scalar.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(_checked_logits(logits, target, self.num_classes), target)


class FocalLoss(nn.Module):
    """Focal loss, mean over pixels: sigmoid focal for one class, softmax focal for more.

    Args:
        num_classes: C of the logits.
        gamma: focusing parameter (0 gives cross-entropy).
        alpha: binary only: weight of the positives, None for none.

    Shape:
        logits (N, C, H, W), target (N, H, W) int64 -> scalar.
    """

    def __init__(self, num_classes: int, *, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        if alpha is not None and num_classes != 1:
            raise ConfigError(f"focal alpha={alpha} is for binary segmentation only: remove alpha")
        self.num_classes = num_classes
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = _checked_logits(logits, target, self.num_classes)
        if self.num_classes == 1:
            loss = focal_loss_with_logits(logits, one_hot(target, 1), gamma=self.gamma, alpha=self.alpha)
        else:
            loss = softmax_focal_loss_with_logits(logits, target, gamma=self.gamma)
        return loss.mean()


class SumLoss(nn.Module):
    """The sum of several losses on the same logits and target (e.g. Dice + cross-entropy).

    Shape:
        logits (N, C, H, W), target (N, H, W) int64 -> scalar.
    """

    def __init__(self, *losses: nn.Module) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.stack([loss(logits, target) for loss in self.losses]).sum()


def _checked_logits(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``logits`` as float32 after checking the shapes against the convention (no device sync)."""
    if (
        logits.ndim != 4
        or logits.shape[1] != num_classes
        or target.shape != (logits.shape[0], *logits.shape[2:])
    ):
        raise ValueError(
            f"loss expects logits (N, {num_classes}, H, W) and target (N, H, W) but got logits "
            f"{tuple(logits.shape)} and target {tuple(target.shape)}"
        )
    return logits.float()


# --- registry ---------------------------------------------------------------------------------------

# Losses for one-logit binary segmentation, and for softmax over num_classes >= 2.
BINARY_LOSSES: tuple[str, ...] = ("bce", "dice", "dice_bce", "focal")
MULTICLASS_LOSSES: tuple[str, ...] = ("ce", "dice", "dice_ce", "focal")
# The loss to suggest when one is used with the wrong kind of segmentation.
_COUNTERPART = {"bce": "ce", "dice_bce": "dice_ce", "ce": "bce", "dice_ce": "dice_bce"}
_USES_POS_WEIGHT = ("bce", "dice_bce")


def _checked(name: str, num_classes: int, pos_weight: float | None) -> None:
    """Raise ``ConfigError`` unless loss ``name`` fits ``num_classes`` and ``pos_weight``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be an integer >= 1 but got {num_classes!r}")
    valid = losses_for(num_classes)
    if name not in valid:
        kind = "binary segmentation (num_classes=1)" if name in BINARY_LOSSES else "num_classes >= 2"
        raise ConfigError(
            f"loss {name!r} is for {kind} but num_classes={num_classes}: use "
            f"{_COUNTERPART[name]!r} instead (valid here: {', '.join(valid)})"
        )
    if pos_weight is not None and name not in _USES_POS_WEIGHT:
        raise ConfigError(
            f"loss {name!r} ignores pos_weight={pos_weight}: remove pos_weight or use "
            f"{' or '.join(repr(n) for n in _USES_POS_WEIGHT)}"
        )
    if pos_weight is not None and not (isinstance(pos_weight, int | float) and 0 < pos_weight < float("inf")):
        raise ConfigError(f"pos_weight must be a finite number > 0 but got {pos_weight!r}")


def _build_bce(num_classes: int, pos_weight: float | None) -> nn.Module:
    _checked("bce", num_classes, pos_weight)
    return BCEWithLogitsLoss(pos_weight=pos_weight)


def _build_dice(num_classes: int, pos_weight: float | None) -> nn.Module:
    _checked("dice", num_classes, pos_weight)
    return DiceLoss(num_classes)


def _build_dice_bce(num_classes: int, pos_weight: float | None) -> nn.Module:
    _checked("dice_bce", num_classes, pos_weight)
    return SumLoss(DiceLoss(1), BCEWithLogitsLoss(pos_weight=pos_weight))


def _build_focal(num_classes: int, pos_weight: float | None) -> nn.Module:
    _checked("focal", num_classes, pos_weight)
    return FocalLoss(num_classes)


def _build_ce(num_classes: int, pos_weight: float | None) -> nn.Module:
    _checked("ce", num_classes, pos_weight)
    return CrossEntropyLoss(num_classes)


def _build_dice_ce(num_classes: int, pos_weight: float | None) -> nn.Module:
    _checked("dice_ce", num_classes, pos_weight)
    return SumLoss(DiceLoss(num_classes), CrossEntropyLoss(num_classes))


# Each builder takes (num_classes, pos_weight) and raises ConfigError when the two do not fit the loss.
LOSSES: dict[str, Callable[[int, float | None], nn.Module]] = {
    "bce": _build_bce,
    "dice": _build_dice,
    "dice_bce": _build_dice_bce,
    "focal": _build_focal,
    "ce": _build_ce,
    "dice_ce": _build_dice_ce,
}


def losses_for(num_classes: int) -> tuple[str, ...]:
    """The loss names valid for ``num_classes`` (``BINARY_LOSSES`` for 1, else ``MULTICLASS_LOSSES``)."""
    return BINARY_LOSSES if num_classes == 1 else MULTICLASS_LOSSES


def build_loss(name: str, *, num_classes: int, pos_weight: float | None = None) -> nn.Module:
    """The loss ``name`` for ``num_classes``, called as ``loss(logits, target)``.

    Args:
        name: a name from ``LOSSES``.
        num_classes: C of the logits (1 for binary).
        pos_weight: BCE weight of the foreground pixels, for "bce" and "dice_bce" only.

    Raises:
        ConfigError: the name is unknown, does not fit ``num_classes``, or ignores ``pos_weight``.
    """
    return look_up(LOSSES, name, what="loss")(num_classes, pos_weight)
