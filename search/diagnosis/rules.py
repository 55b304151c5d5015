"""Why did this U-Net's loss not decrease? One label, one line and the numbers, for every finished trial.

``diagnose`` reads a trial's per-epoch history (rows with the keys of ``unet.history.EPOCH_FIELDS``) and
applies the rules below in order; the first that matches wins:

1. diverged: a train or val loss is NaN/inf, or rises above ``DIVERGENCE_FACTOR`` times its first value.
2. stalled: the train loss barely moved from its first epoch.
3. background_only: the loss falls but val Dice stays near 0 (the model predicts background).
4. overfitting: the train loss keeps falling while val loss rises above its minimum, or val Dice falls
   from its best, over the last epochs.
5. unstable: gradient-norm spikes, or a loss that jumps up from one epoch to the next.
6. healthy: none of the above.

Short histories: a single epoch can only show divergence; rules that need a trend (2-4) need
``MIN_TREND_EPOCHS`` epochs, and rule 5 needs two. A NaN val Dice counts as 0 (no measurable overlap), as
in the search's reports to Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from search.outcome import DIAGNOSES, json_number
from unet.divergence import DIVERGENCE_FACTOR

# Epochs needed before a trend (stall, background only, overfitting) means anything: with two epochs
# the second is often still the fast early fall, or not yet.
MIN_TREND_EPOCHS = 3
# Train loss falling less than this fraction of its first value over the whole run is a stall; a
# working setup loses far more than 5 % after epoch 1, whose mean still includes the untrained steps.
STALL_MAX_DECREASE = 0.05
# Best val Dice below this is "predicts background only"; even a poor model that finds the objects
# scores well above 0.05.
BACKGROUND_MAX_DICE = 0.05
# Overfitting needs the signal in each of the last this many epochs, so one noisy epoch is not enough.
OVERFIT_TAIL_EPOCHS = 2
# Val loss at least this fraction above its minimum (10 %) counts as risen well above it.
OVERFIT_VAL_RISE = 0.10
# Val Dice at least this much (absolute) below its best counts as fallen from it.
OVERFIT_DICE_DROP = 0.05
# A mean loss over a whole epoch rising more than 50 % from the epoch before is not batch noise.
LOSS_JUMP = 0.5
# The largest step's gradient norm this many times the typical (median) epoch-mean norm is a spike.
# Epoch 1 is left out: the first steps from a fresh initialisation legitimately have large gradients.
GRAD_SPIKE_FACTOR = 10.0


@dataclass(frozen=True)
class Diagnosis:
    """What went wrong (or not) in one trial."""

    label: str  # one of DIAGNOSES
    summary: str  # one line: what was seen, the likely cause and the fix
    evidence: dict[str, float | int | str] = field(default_factory=dict)  # the numbers, JSON-safe

    def __post_init__(self) -> None:
        if self.label not in DIAGNOSES:
            raise ValueError(f"diagnosis label must be one of {', '.join(DIAGNOSES)} but got {self.label!r}")


@dataclass(frozen=True)
class _Curves:
    """The history as columns, plus what the summaries mention."""

    train: np.ndarray
    val: np.ndarray
    dice: np.ndarray  # NaN already replaced by 0
    grad: np.ndarray
    grad_max: np.ndarray
    learning_rate: float  # from params, else the first epoch's; NaN if unknown
    loss_name: str | None

    @property
    def n(self) -> int:
        return len(self.train)

    @property
    def lr_text(self) -> str:
        return f" with learning rate {self.learning_rate:.2g}" if math.isfinite(self.learning_rate) else ""


def diagnose(
    history: Sequence[Mapping[str, float]],
    *,
    params: Mapping[str, object] | None = None,
    stop_reason: str | None = None,
) -> Diagnosis:
    """Label a trial's training run and say why its loss did (not) decrease.

    Args:
        history: one row per epoch, in order, with the keys of ``unet.history.EPOCH_FIELDS`` (missing
            or None values are read as NaN, i.e. unknown).
        params: the trial's hyperparameters; ``learning_rate`` and ``loss`` are quoted in the summary.
        stop_reason: why the trial was stopped, if it was; a trial stopped as "diverged" (e.g. on a loss
            far above the initial step's, which the per-epoch curves cannot show) is diagnosed so.

    Returns:
        The first matching diagnosis of the module's rule list, with its evidence.

    Raises:
        ValueError: ``history`` is empty (a trial that never finished an epoch has nothing to diagnose).
    """
    if len(history) == 0:
        raise ValueError("history is empty: a diagnosis needs at least one finished epoch")
    curves = _columns(history, params or {})
    evidence = _base_evidence(curves)
    for rule in _RULES:
        found = rule(curves, evidence)
        if found is not None:
            return found
        if rule is _diverged and stop_reason == "diverged":
            return Diagnosis(
                "diverged",
                f"diverged: the trial was stopped as diverged at epoch {curves.n}{curves.lr_text}: "
                + _DIVERGED_FIX,
                evidence | {"stop_reason": "diverged"},
            )
    return _healthy(curves, evidence)


def _columns(history: Sequence[Mapping[str, float]], params: Mapping[str, object]) -> _Curves:
    def column(key: str) -> np.ndarray:
        return np.array([_float(row.get(key)) for row in history], dtype=float)

    lr = _float(params.get("learning_rate"))
    if not math.isfinite(lr):
        lr = _float(history[0].get("learning_rate"))
    loss = params.get("loss")
    dice = column("val_dice")
    return _Curves(
        train=column("train_loss"),
        val=column("val_loss"),
        dice=np.where(np.isfinite(dice), dice, 0.0),
        grad=column("grad_norm"),
        grad_max=column("grad_norm_max"),
        learning_rate=lr,
        loss_name=str(loss) if loss is not None else None,
    )


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _base_evidence(c: _Curves) -> dict[str, float | int | str]:
    best = int(np.argmax(c.dice))
    return {
        "epochs": c.n,
        "learning_rate": json_number(c.learning_rate),
        "first_train_loss": json_number(c.train[0]),
        "last_train_loss": json_number(c.train[-1]),
        "first_val_loss": json_number(c.val[0]),
        "last_val_loss": json_number(c.val[-1]),
        "best_dice": float(c.dice[best]),
        "best_dice_epoch": best + 1,
        "last_dice": float(c.dice[-1]),
    }


_DIVERGED_FIX = (
    "the learning rate is too high or the loss overflowed; lower it 10x, set grad_clip or turn off "
    "mixed precision"
)


def _diverged(c: _Curves, evidence: dict[str, float | int | str]) -> Diagnosis | None:
    fix = _DIVERGED_FIX
    for i in range(c.n):
        for name, values in (("train loss", c.train), ("val loss", c.val)):
            value, first = values[i], values[0]
            if not math.isfinite(value):
                what = f"{name} became {value} at epoch {i + 1}"
                extra: dict[str, float | int | str] = {"epoch": i + 1, "loss": name, "value": str(value)}
            elif first > 0 and value > DIVERGENCE_FACTOR * first:
                what = (
                    f"{name} rose to {value:.3g} at epoch {i + 1}, {value / first:.0f}x its first {first:.3g}"
                )
                extra = {"epoch": i + 1, "loss": name, "value": value, "ratio": value / first}
            else:
                continue
            evidence = evidence | extra | {"divergence_factor": DIVERGENCE_FACTOR}
            return Diagnosis("diverged", f"diverged: {what}{c.lr_text}: {fix}", evidence)
    return None


def _stalled(c: _Curves, evidence: dict[str, float | int | str]) -> Diagnosis | None:
    if c.n < MIN_TREND_EPOCHS:
        return None
    decrease = _fall(c.train[0], float(np.min(c.train)))
    if decrease >= STALL_MAX_DECREASE:
        return None
    summary = (
        f"stalled: train loss moved {decrease:.1%} in {c.n} epochs ({c.train[0]:.3g} to "
        f"{np.min(c.train):.3g}){c.lr_text}: learning rate too low or dead units; try a 10x higher "
        f"learning rate, or batch/group norm"
    )
    return Diagnosis("stalled", summary, evidence | {"train_decrease": decrease, "limit": STALL_MAX_DECREASE})


def _background_only(c: _Curves, evidence: dict[str, float | int | str]) -> Diagnosis | None:
    if c.n < MIN_TREND_EPOCHS or float(np.max(c.dice)) >= BACKGROUND_MAX_DICE:
        return None
    decrease = _fall(c.train[0], float(np.min(c.train)))
    loss = f" with loss {c.loss_name!r}" if c.loss_name else ""
    summary = (
        f"background_only: train loss fell {decrease:.0%} but val Dice never exceeded "
        f"{np.max(c.dice):.3f}: the model predicts background only, likely class imbalance{loss}; "
        f"try a dice or focal loss, or set pos_weight"
    )
    return Diagnosis("background_only", summary, evidence | {"train_decrease": decrease})


def _overfitting(c: _Curves, evidence: dict[str, float | int | str]) -> Diagnosis | None:
    if c.n < MIN_TREND_EPOCHS:
        return None
    tail = range(c.n - OVERFIT_TAIL_EPOCHS, c.n)
    low = int(np.argmin(c.val))
    rise = [-_fall(c.val[low], c.val[i]) for i in tail]
    if low < tail.start and min(rise) >= OVERFIT_VAL_RISE and _train_still_falling(c, low):
        seen = (
            f"val loss rose {rise[-1]:.0%} above its minimum {c.val[low]:.3g} (epoch {low + 1}) while "
            f"train loss fell to {c.train[-1]:.3g}"
        )
        extra: dict[str, float | int | str] = {"min_val_loss_epoch": low + 1, "val_rise": rise[-1]}
    else:
        best = int(np.argmax(c.dice))
        drops = [float(c.dice[best] - c.dice[i]) for i in tail]
        if not (best < tail.start and min(drops) >= OVERFIT_DICE_DROP and _train_still_falling(c, best)):
            return None
        seen = (
            f"val Dice fell from {c.dice[best]:.3f} (epoch {best + 1}) to {c.dice[-1]:.3f} while train "
            f"loss fell to {c.train[-1]:.3g}"
        )
        extra = {"dice_drop": drops[-1]}
    fix = "too little data or too much capacity; add augmentation or weight decay, use fewer filters, or "
    fix += "keep the best epoch"
    return Diagnosis("overfitting", f"overfitting: {seen}: {fix}", evidence | extra)


def _train_still_falling(c: _Curves, since: int) -> bool:
    """Train loss ends below its value at epoch ``since`` and never jumped up on the way."""
    jump, _ = _largest_jump(c.train[since:])
    return bool(c.train[-1] < c.train[since]) and jump <= LOSS_JUMP


def _unstable(c: _Curves, evidence: dict[str, float | int | str]) -> Diagnosis | None:
    if c.n < 2:
        return None
    fix = "learning rate too high for some batches; set grad_clip, lower the learning rate or add warm-up"
    grad, grad_max = c.grad[1:], c.grad_max[1:]
    if np.isfinite(grad).any() and np.isfinite(grad_max).any():
        median = float(np.nanmedian(grad))
        spike = int(np.nanargmax(grad_max))
        ratio = float(grad_max[spike]) / median if median > 0 else math.inf
        if ratio > GRAD_SPIKE_FACTOR:
            summary = (
                f"unstable: gradient norm spiked to {grad_max[spike]:.3g} at epoch {spike + 2}, "
                f"{ratio:.0f}x the median {median:.3g}: {fix}"
            )
            extra = {"grad_norm_max": json_number(grad_max[spike]), "median_grad_norm": median}
            return Diagnosis("unstable", summary, evidence | extra | {"grad_ratio": json_number(ratio)})
    for name, values in (("train", c.train), ("val", c.val)):
        jump, at = _largest_jump(values)
        if jump > LOSS_JUMP:
            summary = f"unstable: {name} loss jumped {jump:.0%} from epoch {at} to {at + 1}: {fix}"
            extra = {"loss": name, "jump": jump, "jump_epoch": at + 1}
            return Diagnosis("unstable", summary, evidence | extra)
    return None


def _largest_jump(values: np.ndarray) -> tuple[float, int]:
    """The largest relative rise between consecutive values, and the 1-based index it starts from."""
    rises = [-_fall(values[i - 1], values[i]) for i in range(1, len(values))]
    if not rises:
        return 0.0, 0
    at = int(np.argmax(rises))
    return float(rises[at]), at + 1


def _healthy(c: _Curves, evidence: dict[str, float | int | str]) -> Diagnosis:
    fall = _fall(c.val[0], float(c.val[-1]))
    change = -fall if fall else 0.0  # not "-0%"
    epochs = f"{c.n} epoch" + ("s" if c.n > 1 else "")
    summary = (
        f"healthy: val loss went from {c.val[0]:.3g} to {c.val[-1]:.3g} ({change:+.0%}) in {epochs}, "
        f"best val Dice {evidence['best_dice']:.3f} at epoch {evidence['best_dice_epoch']}"
    )
    if c.n < MIN_TREND_EPOCHS:
        summary += f"; too few epochs to judge trends (need {MIN_TREND_EPOCHS})"
    return Diagnosis("healthy", summary, evidence | {"val_decrease": fall})


def _fall(reference: float, value: float) -> float:
    """How far ``value`` is below ``reference``, relative to its magnitude (negative: above it)."""
    if reference == 0:
        return 0.0
    return float((reference - value) / abs(reference))


_RULES: tuple[Callable[[_Curves, dict[str, float | int | str]], Diagnosis | None], ...] = (
    _diverged,
    _stalled,
    _background_only,
    _overfitting,
    _unstable,
)
