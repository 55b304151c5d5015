"""Rules for causes in the training setup: divergence, stalls, vanishing gradients, instability, capacity.

Each rule reads :class:`search.diagnosis.curves.Curves` and returns a
:class:`search.diagnosis.labels.Finding` (clear or borderline) or None.
"""

from __future__ import annotations

import math

import numpy as np

from search.diagnosis.advice import higher_learning_rate, lower_learning_rate, normalisation_change
from search.diagnosis.curves import MIN_TREND_EPOCHS, Curves, fall, largest_jump
from search.diagnosis.labels import Finding
from search.outcome import json_number
from unet.divergence import DIVERGENCE_FACTOR, GUARD_FACTOR

# Train loss falling less than this share of its first value over the whole run is a stall; a working
# setup loses far more than 5 % after epoch 1, whose mean still includes the untrained steps. Up to
# STALL_BORDER it is borderline.
STALL_MAX_DECREASE = 0.05
STALL_BORDER = 0.08
# The first layer's gradient norm below this share of the whole model's (median over epochs) is
# vanishing: the bench's healthy and failing-for-other-reasons runs sit between 0.02 and 0.3 (the last
# layer is no reference: in a dead network its gradient vanishes too). Up to VANISHING_BORDER it is
# borderline.
VANISHING_RATIO = 1e-3
VANISHING_BORDER = 1e-2
# A mean loss over a whole epoch rising more than 50 % from the epoch before is not batch noise.
LOSS_JUMP = 0.5
# The largest step's gradient norm this many times the typical (median) epoch-mean norm is a spike.
# Epoch 1 is left out: the first steps from a fresh initialisation legitimately have large gradients.
GRAD_SPIKE_FACTOR = 10.0
# Underfitting: the training Dice stays below this although the loss falls and the gradients are fine,
# and the validation Dice is within UNDERFIT_GAP of it (no overfitting gap).
UNDERFIT_TRAIN_DICE = 0.5
UNDERFIT_GAP = 0.1
# ... and the train loss fell less than this share over the last UNDERFIT_TAIL epochs: it has levelled off.
UNDERFIT_TAIL = 3
UNDERFIT_TAIL_FALL = 0.05
# The filters suggested to an underfitting run: 4x its own, at least this many.
UNDERFIT_MIN_FILTERS = 16
# A run "fits" when its training Dice passes this: rules for runs that learn nothing stay quiet then.
FITS_TRAIN_DICE = 0.5

# A val loss this many times a reference has exploded, whatever the trial's length: the untrained model's
# val loss, or the study's median first-epoch val loss (fit's guard factor: healthy curves start at their
# highest, and a learning rate that is merely high stays within a few times the untrained loss).
EXPLODED_FACTOR = GUARD_FACTOR
# The study's median needs this many other trials' first epochs to be a reference.
MIN_PEERS = 3

DIVERGED_FIX = (
    "the learning rate is too high or the loss overflowed; lower it 10x (at most 3x the optimizer's usual "
    "rate), set grad_clip or turn off mixed precision"
)


def diverged(c: Curves) -> Finding | None:
    """A NaN/inf loss at any epoch, or a loss still far above its start at the last epoch.

    A loss that shot up and came back down is instability, not divergence (the rule ``unstable``).
    """
    for i in range(c.n):
        for name, values in (("train loss", c.train), ("val loss", c.val)):
            value, first = values[i], values[0]
            if not math.isfinite(value):
                seen = f"{name} became {value} at epoch {i + 1}{c.lr_text}"
                extra: dict[str, float | int | str] = {"epoch": i + 1, "loss": name, "value": str(value)}
            elif i == c.n - 1 and first > 0 and value > DIVERGENCE_FACTOR * first:
                seen = (
                    f"{name} rose to {value:.3g} at epoch {i + 1}, {value / first:.0f}x its first "
                    f"{first:.3g}{c.lr_text}"
                )
                extra = {"epoch": i + 1, "loss": name, "value": value, "ratio": value / first}
            else:
                continue
            extra["divergence_factor"] = DIVERGENCE_FACTOR
            return Finding("diverged", True, math.inf, seen, DIVERGED_FIX, extra, lower_learning_rate(c, 10))
    return _exploded(c)


def _exploded(c: Curves) -> Finding | None:
    """A val loss EXPLODED_FACTOR times the untrained model's or the study's median first-epoch one, still
    above DIVERGENCE_FACTOR times it at the last epoch (one that came back down is ``unstable``)."""
    peers = [v for v in c.peers.first_val_losses if math.isfinite(v)]
    references = [(c.initial_val, "the untrained model's val loss")]
    if len(peers) >= MIN_PEERS:
        what = f"the median first-epoch val loss of the study's {len(peers)} other trials"
        references.append((c.peers.median_first_val_loss, what))
    for reference, what in references:
        if not (math.isfinite(reference) and reference > 0) or c.val[-1] < DIVERGENCE_FACTOR * reference:
            continue
        peak = int(np.argmax(c.val))
        ratio = float(c.val[peak]) / reference
        if ratio < EXPLODED_FACTOR:
            continue
        seen = (
            f"val loss reached {c.val[peak]:.3g} at epoch {peak + 1}, {ratio:.0f}x {what} "
            f"({reference:.3g}){c.lr_text}"
        )
        evidence: dict[str, float | int | str] = {
            "epoch": peak + 1, "loss": "val loss", "value": float(c.val[peak]), "reference": reference,
            "ratio": ratio, "exploded_factor": EXPLODED_FACTOR,
        }  # fmt: skip
        return Finding("diverged", True, math.inf, seen, DIVERGED_FIX, evidence, lower_learning_rate(c, 10))
    return None


def stalled(c: Curves) -> Finding | None:
    if c.n < MIN_TREND_EPOCHS:
        return None
    decrease = c.train_fall
    new_lr, why = higher_learning_rate(c)
    # Between the limit and the border a stall is borderline, and only where the learning rate is low:
    # at a normal rate such a run learns slowly for another reason (the other rules look for it).
    if decrease >= (STALL_BORDER if new_lr is not None else STALL_MAX_DECREASE):
        return None
    clear = decrease < STALL_MAX_DECREASE
    seen = (
        f"train loss moved {decrease:.1%} in {c.n} epochs ({c.train[0]:.3g} to {np.nanmin(c.train):.3g})"
        f"{c.lr_text}"
    )
    evidence: dict[str, float | int | str] = {"train_decrease": decrease, "limit": STALL_MAX_DECREASE}
    if new_lr is None:
        changes, advice = normalisation_change(c)
        advice = "dead units or no useful gradient; " + advice
    else:
        changes, advice = {"learning_rate": new_lr}, f"{why}; raise it to {new_lr:g}"
    return Finding(
        "stalled", clear, STALL_MAX_DECREASE / max(decrease, 1e-9), seen, advice,
        evidence, changes,
    )  # fmt: skip


def vanishing_gradients(c: Curves) -> Finding | None:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = c.grad_first / c.grad
    ratios = ratios[np.isfinite(ratios)]
    if c.n < 2 or not len(ratios) or fits(c):
        return None
    ratio = float(np.median(ratios))
    if ratio >= VANISHING_BORDER:
        return None
    changes, advice = normalisation_change(c)
    seen = (
        f"the first layer's gradient norm is {ratio:.1e} of the whole model's (median over {len(ratios)} "
        f"epochs; 0.02 to 0.3 in working runs), last layer's {np.nanmedian(c.grad_last):.2g}, while train "
        f"loss fell {c.train_fall:.0%}"
    )
    evidence = {"grad_ratio_first_total": json_number(ratio), "limit": VANISHING_RATIO}
    return Finding(
        "vanishing_gradients", ratio < VANISHING_RATIO, VANISHING_RATIO / max(ratio, 1e-12), seen,
        "the signal dies on the way down (initialisation, depth without normalisation); " + advice,
        evidence, changes,
    )  # fmt: skip


UNSTABLE_FIX = "learning rate too high for some batches; set grad_clip 1 and lower the learning rate 3x"


def unstable(c: Curves) -> Finding | None:
    if c.n < 2:
        return None
    changes: dict[str, float] = {"grad_clip": 1.0} | lower_learning_rate(c, 3)
    grad, grad_max = c.grad[1:], c.grad_max[1:]
    if np.isfinite(grad).any() and np.isfinite(grad_max).any():
        median = float(np.nanmedian(grad))
        spike = int(np.nanargmax(grad_max))
        ratio = float(grad_max[spike]) / median if median > 0 else math.inf
        if ratio > GRAD_SPIKE_FACTOR:
            seen = (
                f"gradient norm spiked to {grad_max[spike]:.3g} at epoch {spike + 2}, {ratio:.0f}x the "
                f"median {median:.3g}"
            )
            evidence = {"grad_norm_max": json_number(grad_max[spike]), "median_grad_norm": median}
            evidence |= {"grad_ratio": json_number(ratio)}
            return Finding("unstable", True, ratio / GRAD_SPIKE_FACTOR, seen, UNSTABLE_FIX, evidence, changes)
    for name, values in (("train", c.train), ("val", c.val)):
        jump, at = largest_jump(values)
        if jump > LOSS_JUMP:
            seen = f"{name} loss jumped {jump:.0%} from epoch {at} to {at + 1}"
            evidence = {"loss": name, "jump": jump, "jump_epoch": at + 1}
            return Finding("unstable", True, jump / LOSS_JUMP, seen, UNSTABLE_FIX, evidence, changes)
    return None


def underfitting(c: Curves) -> Finding | None:
    if c.n < MIN_TREND_EPOCHS or not c.has_train_dice or c.train_fall < STALL_MAX_DECREASE:
        return None
    best_train = c.best_train_dice
    gap = float(c.train_dice[-1] - c.dice[-1])
    if best_train >= UNDERFIT_TRAIN_DICE or gap > UNDERFIT_GAP:
        return None
    tail = max(c.n - UNDERFIT_TAIL, 0)
    tail_fall = fall(c.train[tail], float(c.train[-1]))
    filters = c.setting("model.base_filters")
    changes: dict[str, int] = {}
    advice = "too little capacity or too low a learning rate; use more filters or depth, or raise the rate"
    if isinstance(filters, int) and not isinstance(filters, bool):
        more = max(filters * 4, UNDERFIT_MIN_FILTERS)
        changes = {"model.base_filters": more}
        advice = f"too little capacity; use more filters (base_filters {more}) or more depth"
    seen = (
        f"train loss fell {c.train_fall:.0%} but train Dice reached only {best_train:.3f} (val "
        f"{c.dice[-1]:.3f}), and the last {c.n - tail} epochs moved the loss {tail_fall:.1%}"
    )
    evidence = {"train_dice_limit": UNDERFIT_TRAIN_DICE, "tail_fall": tail_fall, "train_val_gap": gap}
    levelled = tail_fall < UNDERFIT_TAIL_FALL
    return Finding(
        "underfitting", levelled, UNDERFIT_TRAIN_DICE / max(best_train, 1e-9) if levelled else 0.9, seen,
        advice, evidence, changes,
    )  # fmt: skip


def fits(c: Curves) -> bool:
    """The run fits its training images (training Dice high), so it is not failing to learn."""
    return c.has_train_dice and c.best_train_dice >= FITS_TRAIN_DICE
