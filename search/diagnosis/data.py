"""Rules for causes in the data and its fit to the loss: input scale, no signal, imbalance, floods.

Each rule reads :class:`search.diagnosis.curves.Curves` and returns a
:class:`search.diagnosis.labels.Finding` (clear or borderline) or None.
"""

from __future__ import annotations

import math

import numpy as np

from search.diagnosis.curves import MIN_TREND_EPOCHS, Curves
from search.diagnosis.labels import Finding
from search.diagnosis.training import STALL_MAX_DECREASE, fits

# Inputs whose largest absolute value passes this are not normalised (z-scored images rarely pass 15,
# [0, 1] images never pass 1); from INPUT_BORDER on it is borderline.
INPUT_MAX = 50.0
INPUT_BORDER = 20.0
NORM_LAYERS = ("batch", "instance", "group")
# Raw inputs are blamed only for a run that struggled: val Dice under 0.5, or 0.1 below its best at the end.
STRUGGLE_DICE = 0.5
STRUGGLE_DROP = 0.1
# No signal: the best val Dice stays within this of chance (the Dice of predicting everything); on
# mostly-foreground masks within FLOOR_MARGIN (FLOOR_BORDER) of the headroom above it (chance_levels).
NO_SIGNAL_MARGIN = 0.03
NO_SIGNAL_BORDER = 0.08
# The constant floor: on masks at least MOSTLY_FOREGROUND foreground, a model that predicts at least the
# true share and whose best val Dice gains less than FLOOR_MARGIN of the headroom above the all-foreground
# Dice (1 - 2p / (1 + p)) learned nothing beyond "foreground everywhere"; up to FLOOR_BORDER it is
# borderline. Relative to the headroom: at p = 0.85 the floor is 0.919, and an absolute margin would leave
# no Dice that counts as learning.
MOSTLY_FOREGROUND = 0.5
FLOOR_MARGIN = 0.25
FLOOR_BORDER = 0.5
# Best val Dice below this is "predicts nothing"; even a poor model that finds the objects scores more.
BACKGROUND_MAX_DICE = 0.05
# Predicting less than this share of the true foreground is "background only".
BACKGROUND_MAX_SHARE = 0.3
# Predicting at least this many times the true foreground share in the last two epochs is a flood
# (FLOOD_BORDER times: borderline), when val Dice stays below FLOOD_MAX_DICE.
FLOOD_RATIO = 3.0
FLOOD_BORDER = 2.0
FLOOD_MAX_DICE = 0.5
# Losses with a Dice term, which reward finding rare foreground; under them, foreground above this share is
# no imbalance that would explain predicting background only.
DICE_LOSSES = ("dice", "dice_bce", "dice_ce")
IMBALANCED_SHARE = 0.05


def input_scale(c: Curves) -> Finding | None:
    norm = c.setting("model.norm")
    if (
        not math.isfinite(c.input_max)
        or c.input_max < INPUT_BORDER
        or norm in NORM_LAYERS
        or not _struggled(c)
    ):
        return None
    clear = c.input_max >= INPUT_MAX and norm == "none"
    layers = "without normalisation layers" if norm == "none" else "(normalisation layers unknown)"
    seen = (
        f"inputs reach {c.input_max:.3g} (standard deviation {c.input_std:.3g}) {layers}, and the run "
        f"struggled: val Dice best {np.max(c.dice):.3f}, last {c.dice[-1]:.3f}"
    )
    advice = (
        "unnormalised images (e.g. 0..255) saturate the first layers; normalise them (normalization: "
        "zscore) or use batch norm (model.norm: batch)"
    )
    evidence = {"input_max": c.input_max, "input_std": c.input_std, "input_limit": INPUT_MAX}
    changes = {"data.folder.normalization": "zscore"}
    return Finding("input_scale", clear, c.input_max / INPUT_MAX, seen, advice, evidence, changes)


def _struggled(c: Curves) -> bool:
    """A run that did not go well: val Dice below STRUGGLE_DICE, or fallen STRUGGLE_DROP below its best
    by the end, or a training Dice that stayed low."""
    best = float(np.max(c.dice))
    return best < STRUGGLE_DICE or best - float(c.dice[-1]) >= STRUGGLE_DROP or not fits(c)


def no_signal(c: Curves) -> Finding | None:
    chance = c.chance_dice
    if c.n < MIN_TREND_EPOCHS or not math.isfinite(chance) or c.train_fall < STALL_MAX_DECREASE:
        return None
    best = float(np.max(c.dice))
    # Predicting nothing where imbalance explains it is background_only's case.
    nothing = _predicts_nothing(c) and float(c.dice[-1]) < BACKGROUND_MAX_DICE and _imbalance_explains(c)
    # A model that predicts nothing and cannot fit even its training images (training Dice at chance)
    # lacks capacity; without anything learnable a model still memorises some training masks.
    collapsed = _predicts_nothing(c) and c.has_train_dice and c.best_train_dice <= chance
    margin, border = chance_levels(c)
    if best > border or nothing or collapsed or _flood_explained_by_loss(c):
        return None
    if _leans_to_majority_foreground(c):
        return None  # the constant floor of mostly-foreground masks: constant_floor's case
    train = f", train Dice {c.best_train_dice:.3f}" if c.has_train_dice else ""
    seen = (
        f"best val Dice {best:.3f} never rose above chance ({chance:.3f}, predicting every pixel "
        f"foreground at a true share of {c.true_share:.1%}) while train loss fell {c.train_fall:.0%}{train}"
    )
    advice = (
        "nothing learnable reaches validation: check that masks match their images (same stems, not "
        "shifted or rotated; python -m unet.doctor) and that validation is the same kind of data"
    )
    evidence = {"chance_dice": chance, "margin": margin - chance}
    return Finding("no_signal", best <= margin, margin / max(best, 1e-9), seen, advice, evidence)


def chance_levels(c: Curves) -> tuple[float, float]:
    """The val Dice up to which a run is clearly (first) or maybe (second) at chance: NO_SIGNAL_MARGIN
    and NO_SIGNAL_BORDER above it, or on mostly-foreground masks FLOOR_MARGIN and FLOOR_BORDER of the
    headroom above it (at p = 0.9 chance is 0.947, and 0.08 above it would leave no Dice for learning)."""
    chance = c.chance_dice
    if c.true_share >= MOSTLY_FOREGROUND:
        return chance + FLOOR_MARGIN * (1 - chance), chance + FLOOR_BORDER * (1 - chance)
    return chance + NO_SIGNAL_MARGIN, chance + NO_SIGNAL_BORDER


def background_only(c: Curves) -> Finding | None:
    """Val Dice near 0 predicting (almost) no foreground at the end; without recorded shares, val Dice
    near 0 throughout."""
    if c.n < MIN_TREND_EPOCHS:
        return None
    if math.isfinite(c.true_share):
        if not (_predicts_nothing(c) and float(c.dice[-1]) < BACKGROUND_MAX_DICE):
            return None  # too much or misplaced foreground, not too little: see foreground_flood, no_signal
    elif float(np.max(c.dice)) >= BACKGROUND_MAX_DICE:
        return None
    loss = c.setting("loss")
    if not _imbalance_explains(c):
        return None  # a Dice term on 5 %+ foreground does not give up on it from imbalance: see underfitting
    multi = isinstance(c.setting("model.num_classes"), int) and c.setting("model.num_classes") > 1
    dice_loss = "dice_ce" if multi else "dice_bce"
    if loss in DICE_LOSSES:
        changes: dict[str, object] = {} if multi else {"loss": "dice_bce", "pos_weight": 10.0}
        fix = "set pos_weight (e.g. 10) on the BCE part" if not multi else "check the class weights"
    else:
        changes, fix = {"loss": dice_loss}, f"use a loss with a Dice term ({dice_loss})"
    shown = f" with loss {loss!r}" if loss else ""
    share = (
        f", predicting {c.pred_fg[-1]:.2%} foreground of {c.true_share:.2%}"
        if math.isfinite(c.true_share)
        else ""
    )
    seen = (
        f"train loss fell {c.train_fall:.0%} but val Dice ended at {c.dice[-1]:.3f} (best "
        f"{np.max(c.dice):.3f}){share}"
    )
    advice = f"the model predicts background only, likely class imbalance{shown}; {fix}"
    return Finding(
        "background_only", True, BACKGROUND_MAX_DICE / max(float(np.max(c.dice)), 1e-9), seen, advice,
        {"train_decrease": c.train_fall}, changes,
    )  # fmt: skip


def constant_floor(c: Curves) -> Finding | None:
    """Mostly-foreground masks, foreground predicted (nearly) everywhere, and a val Dice no better than
    predicting it everywhere: the class imbalance of background_only, the other way round."""
    if c.n < MIN_TREND_EPOCHS or not _leans_to_majority_foreground(c):
        return None
    floor, best = c.chance_dice, float(np.max(c.dice))
    gained = (best - floor) / (1 - floor)  # the share of the headroom above the floor that was reached
    if gained > FLOOR_BORDER:
        return None
    p = c.true_share
    loss = c.setting("loss")
    # Halfway (in log) to weighing all background pixels as much as all foreground ones, (1 - p) / p: on
    # the bench's faint mostly-foreground runs the full weight overshot (predicting less foreground than
    # there is, val Dice below the floor) and the half one came out closer to learning.
    weight = float(f"{math.sqrt((1 - p) / p):.2g}")
    if loss in ("bce", "dice_bce"):
        changes: dict[str, object] = {"pos_weight": weight}
    elif c.setting("model.num_classes") in (None, 1):
        changes = {"loss": "dice_bce", "pos_weight": weight}
    else:
        changes = {}
    seen = (
        f"best val Dice {best:.3f} is what predicting every pixel foreground scores ({floor:.3f} at a true "
        f"share of {p:.1%}; {max(gained, 0.0):.0%} of the way from it to 1), predicting "
        f"{c.pred_fg[-1]:.1%} foreground"
    )
    fix = f"pos_weight {weight:g} on the BCE term" if changes else "class weights that favour background"
    advice = (
        "the model learned the majority class only (class imbalance, other way round); weigh the "
        f"background: {fix}, or check the masks' polarity (objects marked 0 and background 1?)"
    )
    evidence = {"constant_dice": floor, "floor_gain": gained, "floor_margin": FLOOR_MARGIN}
    clear = gained <= FLOOR_MARGIN
    return Finding("constant_floor", clear, FLOOR_MARGIN / max(gained, 1e-9), seen, advice, evidence, changes)


def _leans_to_majority_foreground(c: Curves) -> bool:
    """Masks mostly foreground and a last epoch predicting at least the true share as foreground."""
    p, q = c.true_share, float(c.pred_fg[-1])
    return math.isfinite(p) and math.isfinite(q) and p >= MOSTLY_FOREGROUND and q >= p


def _imbalance_explains(c: Curves) -> bool:
    """Class imbalance can explain predicting nothing: a loss without a Dice term, or rare foreground."""
    rare = math.isfinite(c.true_share) and c.true_share < IMBALANCED_SHARE
    return c.setting("loss") not in DICE_LOSSES or rare or not math.isfinite(c.true_share)


def _flood_explained_by_loss(c: Curves) -> bool:
    """A flood under a loss without a Dice term, or with pos_weight > 1, is the loss's doing.

    Without anything learnable a Dice loss drives the model to predict everything (the most Dice it can
    get); cross-entropy drives it to the prior, i.e. to background. So a flood says "no signal" only
    under a Dice loss without a positive weight.
    """
    pos_weight = c.setting("pos_weight")
    weighted = isinstance(pos_weight, int | float) and pos_weight > 1
    dice_term = c.setting("loss") in (None, *DICE_LOSSES)
    ratio = c.flood_ratio(c.n - 1)
    return math.isfinite(ratio) and ratio >= FLOOD_BORDER and (weighted or not dice_term)


def _predicts_nothing(c: Curves) -> bool:
    """The last epoch predicts less than BACKGROUND_MAX_SHARE of the true foreground share."""
    ratio = c.flood_ratio(c.n - 1)
    return math.isfinite(ratio) and ratio < BACKGROUND_MAX_SHARE


def foreground_flood(c: Curves) -> Finding | None:
    if c.n < MIN_TREND_EPOCHS or not math.isfinite(c.true_share):
        return None
    ratio = min(c.flood_ratio(c.n - 2), c.flood_ratio(c.n - 1))
    if not ratio >= FLOOD_BORDER or float(c.dice[-1]) >= FLOOD_MAX_DICE or not _flood_explained_by_loss(c):
        return None  # under a plain Dice loss a flood is a symptom (no signal, little capacity), not a cause
    pos_weight = c.setting("pos_weight")
    weighted = isinstance(pos_weight, int | float) and pos_weight > 1
    if weighted:
        changes: dict[str, object] = {"pos_weight": None}
        fix = f"pos_weight {pos_weight:g} pushes it to foreground; remove it or lower it to about 1-3"
    else:
        lr = c.learning_rate
        changes = {"learning_rate": float(f"{lr * 3:.2g}")} if math.isfinite(lr) else {}
        fix = "it is still shrinking the foreground from its start near half the image; raise the "
        fix += "learning rate 3x or train longer"
    seen = (
        f"predicted {c.pred_fg[-1]:.1%} of validation pixels as foreground where {c.true_share:.1%} are "
        f"({ratio:.1f}x), val Dice {c.dice[-1]:.3f}"
    )
    evidence = {"flood_ratio": ratio, "flood_limit": FLOOD_RATIO}
    # A pos_weight > 1 explains a flood, so twice the true share is clear enough; without it, three times.
    clear = ratio >= (FLOOD_BORDER if weighted else FLOOD_RATIO)
    return Finding("foreground_flood", clear, ratio / FLOOD_RATIO, seen, fix, evidence, changes)
