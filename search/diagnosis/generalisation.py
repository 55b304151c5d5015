"""The overfitting rule: the model fits its training images while validation gets worse."""

from __future__ import annotations

import numpy as np

from search.diagnosis.curves import MIN_TREND_EPOCHS, Curves, fall, largest_jump
from search.diagnosis.labels import Finding
from search.diagnosis.training import LOSS_JUMP

# Overfitting needs the signal in each of the last this many epochs, so one noisy epoch is not enough.
OVERFIT_TAIL_EPOCHS = 2
# Val loss at least this fraction above its minimum (10 %) counts as risen well above it.
OVERFIT_VAL_RISE = 0.10
# Val Dice at least this much (absolute) below its best counts as fallen from it.
OVERFIT_DICE_DROP = 0.05
# Where training Dice is recorded, it must end at least this far above val Dice: a model that fits the
# training images. Below OVERFIT_BORDER_GAP the run fits nothing, whatever validation does.
OVERFIT_GAP = 0.15
OVERFIT_BORDER_GAP = 0.05
# With a train/val Dice gap of at least WIDE_GAP, smaller signs of validation getting worse suffice.
WIDE_GAP = 0.3
WIDE_GAP_VAL_RISE = 0.05
WIDE_GAP_DICE_DROP = 0.03


def overfitting(c: Curves) -> Finding | None:
    if c.n < MIN_TREND_EPOCHS:
        return None
    tail = range(c.n - OVERFIT_TAIL_EPOCHS, c.n)
    low = int(np.argmin(c.val))
    rise = [-fall(c.val[low], c.val[i]) for i in tail]
    wide = c.has_train_dice and float(c.train_dice[-1] - c.dice[-1]) >= WIDE_GAP
    min_rise, min_drop = (
        (WIDE_GAP_VAL_RISE, WIDE_GAP_DICE_DROP) if wide else (OVERFIT_VAL_RISE, OVERFIT_DICE_DROP)
    )
    evidence: dict[str, float | int | str]
    if low < tail.start and min(rise) >= min_rise and _train_still_falling(c, low):
        seen = (
            f"val loss rose {rise[-1]:.0%} above its minimum {c.val[low]:.3g} (epoch {low + 1}) while "
            f"train loss fell to {c.train[-1]:.3g}"
        )
        evidence, best_epoch = {"min_val_loss_epoch": low + 1, "val_rise": rise[-1]}, low + 1
    else:
        best = int(np.argmax(c.dice))
        drops = [float(c.dice[best] - c.dice[i]) for i in tail]
        if not (best < tail.start and min(drops) >= min_drop and _train_still_falling(c, best)):
            return None
        seen = (
            f"val Dice fell from {c.dice[best]:.3f} (epoch {best + 1}) to {c.dice[-1]:.3f} while train "
            f"loss fell to {c.train[-1]:.3g}"
        )
        evidence, best_epoch = {"dice_drop": drops[-1]}, best + 1
    clear, closeness = True, 1.0
    if c.has_train_dice:
        gap = float(c.train_dice[-1] - c.dice[-1])
        if gap < OVERFIT_BORDER_GAP:
            return None
        seen += f", train Dice {c.train_dice[-1]:.3f} vs val {c.dice[-1]:.3f}"
        evidence |= {"train_val_gap": gap, "gap_limit": OVERFIT_GAP}
        clear, closeness = gap >= OVERFIT_GAP, gap / OVERFIT_GAP
    advice = (
        f"too little data or too much capacity; stop at the best epoch (epochs: {best_epoch}), add "
        f"augmentation or weight decay, or use fewer filters"
    )
    return Finding("overfitting", clear, closeness, seen, advice, evidence, {"epochs": best_epoch})


def _train_still_falling(c: Curves, since: int) -> bool:
    """Train loss went below its value at epoch ``since`` later on and never jumped up on the way.

    The lowest later value rather than the last one: on a few training images the epoch means are noisy.
    """
    jump, _ = largest_jump(c.train[since:])
    return bool(np.min(c.train[since + 1 :]) < c.train[since]) and jump <= LOSS_JUMP
