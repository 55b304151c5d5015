"""When to stop a trial: its own val-loss curve (plateau, divergence) and its val Dice against other trials.

The loss function is itself a searched hyperparameter, so loss values of different trials are not
comparable: plateaus and divergence are judged on each trial's OWN validation loss curve
(``PlateauRule``), and only the cross-trial rule (``CrossTrialRule``, an Optuna pruner) compares trials,
on val Dice. ``TrialStopper`` combines both for one trial, one epoch at a time.

Every decision depends only on the curves (and, for the cross-trial rule, on the intermediate values
stored in the study), never on timing or process state, so the local and the Ray backend agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import optuna
from optuna.pruners import BasePruner, MedianPruner, NopPruner, SuccessiveHalvingPruner
from optuna.trial import FrozenTrial, TrialState

from unet.errors import ConfigError
from unet.registry import look_up

logger = logging.getLogger(__name__)

STOP_REASONS: tuple[str, ...] = (
    "plateau",  # own val loss stopped improving (PlateauRule)
    "diverged",  # own val loss became NaN/inf or blew up (PlateauRule)
    "underperforming",  # val Dice behind the other trials (CrossTrialRule)
    "out_of_memory",  # the accelerator ran out of memory (set by the backends)
    "worker_lost",  # the process or node running the trial went away (set by the backends)
    "interrupted",  # the user or the scheduler stopped the study (set by the backends)
)

# A val loss this many times its first value counts as diverged. The first value is measured after one
# epoch of training, so it is usually the highest of a healthy curve; genuine blow-ups go up by orders of
# magnitude. Overfitting or BatchNorm noise can raise a val loss 2-3x above a low first value (imbalanced
# BCE starts low), and calling that "diverged" would mislead the diagnosis, while the plateau rule stops
# such a curve within `patience` epochs anyway. So the factor errs high: 5 is clearly beyond noise and
# still well below a real blow-up.
DEFAULT_DIVERGENCE_FACTOR = 5.0


@dataclass(frozen=True)
class StopDecision:
    """Why a trial was stopped, at which epoch, and the numbers behind it."""

    reason: str  # one of STOP_REASONS
    epoch: int  # 1-based epoch at which the decision was taken
    detail: dict[str, float | int | str] = field(default_factory=dict)  # JSON-serialisable, no NaN
    message: str = ""  # one human line: what was seen, with the numbers

    def __post_init__(self) -> None:
        if self.reason not in STOP_REASONS:
            raise ValueError(f"stop reason must be one of {', '.join(STOP_REASONS)} but got {self.reason!r}")

    def to_dict(self) -> dict[str, object]:
        """The decision as plain data, for the store and the reports."""
        return {
            "reason": self.reason,
            "epoch": self.epoch,
            "detail": dict(self.detail),
            "message": self.message,
        }


def json_number(value: float) -> float | str:
    """``value`` as a JSON-safe number: finite floats as they are, NaN/inf as "nan", "inf" or "-inf"."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


@dataclass(frozen=True)
class PlateauRule:
    """Stops one trial on its own validation-loss curve: divergence at once, plateaus after warm-up.

    The rule, judged at epoch ``n`` on the losses of epochs ``1..n``:

    1. diverged: the val loss of epoch ``n`` is NaN or +-inf, at any epoch, warm-up included; or it is
       more than ``divergence_factor`` times the val loss of epoch 1 (only when that is > 0, since a
       ratio to a zero or negative loss means nothing).
    2. plateau, only when ``n > warmup_epochs`` and ``n > patience`` (one epoch before the window is
       needed): the window is the last ``patience`` epochs. With ``best_before`` the lowest loss before
       the window and ``best_window`` the lowest loss in it, the improvement is
       ``(best_before - best_window) / |best_before|``. If it is >= ``min_delta`` (and > 0, so that a
       flat curve stops even with ``min_delta=0``), the curve lives on.
       Because the improvement is measured over the whole window, a curve falling steadily by ``r`` per
       epoch survives whenever ``1 - (1 - r) ** patience >= min_delta``: 0.5 %/epoch with patience 3
       gives 1.5 % >= 1 %.
    3. trend veto: a noisy but improving curve can miss a new best for ``patience`` epochs because one
       earlier epoch was luckily low. So before calling a plateau, a least-squares line is fitted to
       the last ``2 * patience`` post-warm-up epochs (at least 3); if that line falls by at least
       ``min_delta`` (and > 0; relative to the mean of those losses) over ``patience`` epochs, the curve
       is still improving and lives on. Warm-up epochs are left out of the fit because their fast early fall
       says nothing about the trend now. A flat, or noisy flat, curve has a slope near zero and is
       stopped.

    ``check`` returns the FIRST epoch at which this rule stops the curve, so a whole curve gives the same
    decision as feeding it epoch by epoch.
    """

    warmup_epochs: int = 2  # no plateau decision at epochs 1..warmup_epochs (divergence is still caught)
    patience: int = 3  # epochs without enough improvement before a plateau is called
    min_delta: float = 0.01  # relative improvement over the patience window that counts (0.01 = 1 %)
    divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR  # see DEFAULT_DIVERGENCE_FACTOR

    def __post_init__(self) -> None:
        _check_int(self.warmup_epochs, "plateau.warmup_epochs", low=0)
        _check_int(self.patience, "plateau.patience", low=1)
        if not _is_real(self.min_delta) or not 0.0 <= self.min_delta < 1.0:
            raise ConfigError(
                f"plateau.min_delta must be a relative improvement in [0, 1) (0.01 = 1 %) "
                f"but got {self.min_delta!r}"
            )
        if not _is_real(self.divergence_factor) or not 1.0 < self.divergence_factor < math.inf:
            raise ConfigError(
                f"plateau.divergence_factor must be a finite number > 1 (e.g. 5.0) "
                f"but got {self.divergence_factor!r}"
            )

    def check(self, val_losses: Sequence[float]) -> StopDecision | None:
        """The first epoch at which this rule stops the curve, or None if it never does.

        Args:
            val_losses: the trial's validation loss of epochs 1, 2, ... (epoch = 1-based position).

        Returns:
            The decision (reason "diverged" or "plateau") at the first epoch that triggers it, or None.
        """
        losses = [float(v) for v in val_losses]
        for n in range(1, len(losses) + 1):
            decision = self._divergence(losses[:n]) or self._plateau(losses[:n])
            if decision is not None:
                return decision
        return None

    def _divergence(self, losses: list[float]) -> StopDecision | None:
        n, last, first = len(losses), losses[-1], losses[0]
        if not math.isfinite(last):
            return StopDecision(
                "diverged",
                n,
                {"val_loss": json_number(last), "first_val_loss": json_number(first)},
                f"val loss is {last} at epoch {n}",
            )
        if first > 0 and last > self.divergence_factor * first:
            return StopDecision(
                "diverged",
                n,
                {
                    "val_loss": last,
                    "first_val_loss": first,
                    "ratio": last / first,
                    "divergence_factor": self.divergence_factor,
                },
                f"val loss {last:.4g} at epoch {n} is {last / first:.1f}x its first value {first:.4g} "
                f"(limit {self.divergence_factor:g}x)",
            )
        return None

    def _plateau(self, losses: list[float]) -> StopDecision | None:
        n, p = len(losses), self.patience
        if n <= self.warmup_epochs or n <= p:
            return None
        before, window = losses[: n - p], losses[n - p :]
        best_before, best_window = min(before), min(window)
        improvement = _relative_fall(best_before, best_window)
        if improvement > 0 and improvement >= self.min_delta:
            return None
        trend = _trend_fall(losses[max(self.warmup_epochs, n - 2 * p) :], over=p)
        if trend is not None and trend > 0 and trend >= self.min_delta:
            return None
        best_epoch = before.index(best_before) + 1
        detail: dict[str, float | int | str] = {
            "best_before": best_before,
            "best_before_epoch": best_epoch,
            "best_window": best_window,
            "window_start": n - p + 1,
            "window_end": n,
            "improvement": improvement,
            "trend_improvement": "none" if trend is None else trend,
            "min_delta": self.min_delta,
            "patience": p,
        }
        message = (
            f"val loss has not improved by {self.min_delta * 100:g}% on its best {best_before:.4g} "
            f"(epoch {best_epoch}) for {p} epochs (epochs {n - p + 1}-{n}: best {best_window:.4g}, "
            f"{improvement:+.2%})"
        )
        return StopDecision("plateau", n, detail, message)


def _relative_fall(reference: float, value: float) -> float:
    """How much ``value`` is below ``reference``, relative to the reference's magnitude."""
    if reference == 0.0:
        return 0.0 if value >= 0.0 else math.inf
    return (reference - value) / abs(reference)


def _trend_fall(losses: Sequence[float], *, over: int) -> float | None:
    """Relative fall over ``over`` epochs of the least-squares line through ``losses`` (None if < 3)."""
    if len(losses) < 3:
        return None
    y = np.asarray(losses, dtype=float)
    x = np.arange(len(y), dtype=float)
    slope = float(np.dot(x - x.mean(), y - y.mean()) / np.dot(x - x.mean(), x - x.mean()))
    scale = abs(float(y.mean()))
    return -slope * over / scale if scale > 0 else 0.0


@dataclass(frozen=True)
class CrossTrialRule:
    """Which Optuna pruner compares a trial's val Dice with other trials' (steps are 1-based epochs)."""

    name: str = "median"  # none, median or successive_halving (keys of CROSS_TRIAL_RULES)
    warmup_epochs: int = 2  # epochs 1..warmup_epochs are never judged against other trials
    min_trials: int = 5  # completed trials needed before any trial is judged against them
    reduction_factor: int = 3  # successive_halving: keep the best 1/reduction_factor at each rung

    def __post_init__(self) -> None:
        look_up(CROSS_TRIAL_RULES, self.name, what="cross-trial rule")
        _check_int(self.warmup_epochs, "cross_trial.warmup_epochs", low=0)
        _check_int(self.min_trials, "cross_trial.min_trials", low=0)
        _check_int(self.reduction_factor, "cross_trial.reduction_factor", low=2)

    def build(self) -> BasePruner:
        """A fresh Optuna pruner for this rule."""
        return look_up(CROSS_TRIAL_RULES, self.name, what="cross-trial rule")(self)


def _build_none(rule: CrossTrialRule) -> BasePruner:
    return NopPruner()


def _build_median(rule: CrossTrialRule) -> BasePruner:
    # Steps are 1-based epochs and MedianPruner judges steps >= n_warmup_steps, so +1 spares epoch W.
    return MedianPruner(n_startup_trials=rule.min_trials, n_warmup_steps=rule.warmup_epochs + 1)


def _build_successive_halving(rule: CrossTrialRule) -> BasePruner:
    # An explicit min_resource (not "auto", which depends on which trials happen to have finished)
    # keeps the rungs the same in every process: epochs W+1, (W+1)*eta, (W+1)*eta**2 ...
    halving = SuccessiveHalvingPruner(
        min_resource=rule.warmup_epochs + 1, reduction_factor=rule.reduction_factor
    )
    return _AfterStartup(halving, min_trials=rule.min_trials)


CROSS_TRIAL_RULES: dict[str, Callable[[CrossTrialRule], BasePruner]] = {
    "none": _build_none,
    "median": _build_median,
    "successive_halving": _build_successive_halving,
}


class _AfterStartup(BasePruner):
    """Runs a pruner but overrules its "prune" until ``min_trials`` trials have completed.

    SuccessiveHalvingPruner has no startup count. The wrapped pruner is still called during start-up,
    so it records each trial's rung values and later trials compete against them.
    """

    def __init__(self, pruner: BasePruner, *, min_trials: int) -> None:
        self._pruner = pruner
        self._min_trials = min_trials

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        prune = self._pruner.prune(study, trial)
        n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        return prune and n_complete >= self._min_trials


class TrialStopper:
    """Per-trial adapter to Optuna: reports val Dice every epoch and decides whether to stop.

    One instance per trial. The own-curve rule (plateau, divergence) goes first, then the cross-trial
    pruner built from ``cross_trial``; that pruner is used whatever pruner the study itself was created
    with, so the decision does not depend on how the backend made the study.

    A NaN/inf val Dice is reported to Optuna as 0.0: Optuna stores NaN, but MedianPruner then ignores
    that value when it computes the other trials' median (biasing it upwards) and SuccessiveHalvingPruner
    prunes a NaN at once; Dice lies in [0, 1], so a run with no measurable overlap scores the worst value.
    """

    def __init__(
        self, *, plateau: PlateauRule | None = None, cross_trial: CrossTrialRule | None = None
    ) -> None:
        self.plateau = plateau if plateau is not None else PlateauRule()
        self.cross_trial = cross_trial if cross_trial is not None else CrossTrialRule()
        self._pruner = self.cross_trial.build()
        self._val_losses: list[float] = []

    def after_epoch(
        self, trial: optuna.Trial, epoch: int, val_loss: float, val_dice: float
    ) -> StopDecision | None:
        """Report epoch ``epoch`` of ``trial`` and say whether to stop it.

        Args:
            trial: the running Optuna trial (single objective, maximised val Dice).
            epoch: the 1-based epoch just finished; must follow the previous call's epoch.
            val_loss: the epoch's validation loss (may be NaN/inf).
            val_dice: the epoch's validation Dice (may be NaN).

        Returns:
            A StopDecision ("diverged", "plateau" or "underperforming"), or None to go on.

        Raises:
            ValueError: ``epoch`` is not the next epoch of this trial.
        """
        if epoch != len(self._val_losses) + 1:
            raise ValueError(
                f"epoch must be {len(self._val_losses) + 1} (epochs are reported in order from 1) "
                f"but got {epoch!r}"
            )
        self._val_losses.append(float(val_loss))
        dice = float(val_dice) if math.isfinite(float(val_dice)) else 0.0
        trial.report(dice, epoch)
        decision = self.plateau.check(self._val_losses)
        if decision is None:
            # Trial.storage and get_trial are public; the trial id is the one private piece (the same
            # lookup Trial.should_prune does, but with our pruner instead of the study's).
            frozen = trial.storage.get_trial(trial._trial_id)
            if self._pruner.prune(trial.study, frozen):
                decision = self._underperforming(trial, frozen, epoch, dice)
        if decision is not None:
            logger.info("trial %d stopped: %s: %s", trial.number, decision.reason, decision.message)
        return decision

    def _underperforming(
        self, trial: optuna.Trial, frozen: FrozenTrial, epoch: int, dice: float
    ) -> StopDecision:
        rule, study = self.cross_trial, trial.study
        detail: dict[str, float | int | str] = {"rule": rule.name, "dice": dice}
        if rule.name == "median":
            # As MedianPruner compares: this trial's best Dice so far against the NaN-ignoring median
            # of the COMPLETED trials' Dice at this step (pruned trials are not peers there).
            best = max(frozen.intermediate_values.values())
            peers = [
                t.intermediate_values[epoch]
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if epoch in t.intermediate_values
            ]
            median = float(np.nanmedian(peers))
            detail |= {"best_dice": best, "median_dice": median, "n_trials": len(peers)}
            message = (
                f"best val Dice {best:.3f} is below the median {median:.3f} of {len(peers)} completed "
                f"trials at epoch {epoch} (median rule)"
            )
        else:
            # The pruner has just stored this trial's rung value, so read the trial again.
            attrs = trial.storage.get_trial(trial._trial_id).system_attrs
            rung, threshold, n_competing = _halving_rung(study, attrs, rule.reduction_factor)
            detail |= {"rung": rung, "threshold_dice": threshold, "n_competing": n_competing}
            message = (
                f"val Dice {dice:.3f} at epoch {epoch} is below {threshold:.3f}, the top 1/"
                f"{rule.reduction_factor} of {n_competing} trials at rung {rung} (successive halving)"
            )
        return StopDecision("underperforming", epoch, detail, message)


def _halving_rung(
    study: optuna.Study, attrs: Mapping[str, object], reduction_factor: int
) -> tuple[int, float, int]:
    """The rung at which successive halving pruned a trial, the Dice needed to pass it, and the field.

    ``attrs`` are the pruned trial's system attributes, where the pruner keeps its rung values. Mirrors
    SuccessiveHalvingPruner's promotion test: sorted descending, the value at index
    ``max(len // eta - 1, 0)`` is the lowest Dice that is promoted.
    """
    rung = max(int(key.rsplit("_", 1)[1]) for key in attrs if key.startswith("completed_rung_"))
    key = f"completed_rung_{rung}"
    values = sorted(
        (float(t.system_attrs[key]) for t in study.get_trials(deepcopy=False) if key in t.system_attrs),
        reverse=True,
    )
    return rung, values[max(len(values) // reduction_factor - 1, 0)], len(values)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def _check_int(value: object, name: str, *, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low} but got {value!r}")
