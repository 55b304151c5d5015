"""The cross-trial rules: Optuna pruners that compare a trial's val Dice with other trials' (1-based epochs).

To add a rule, write its builder (``CrossTrialRule -> BasePruner``) and name it in ``CROSS_TRIAL_RULES``;
the study file's ``pruning.cross_trial.rule`` then accepts the name (add it to its ``Literal`` too).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.pruners import BasePruner, MedianPruner, NopPruner, SuccessiveHalvingPruner
from optuna.trial import FrozenTrial, TrialState

from search.outcome import continued_from
from search.pruning.validation import check_int
from unet.errors import ConfigError
from unet.registry import look_up

# The names of CROSS_TRIAL_RULES, for type checkers and the study file's schema.
CrossTrialRuleName = Literal["none", "median", "successive_halving"]


@dataclass(frozen=True)
class CrossTrialRule:
    """Which Optuna pruner compares a trial's val Dice with other trials' (steps are 1-based epochs)."""

    # These defaults are the study file's (search.spec.schema takes them from here), tuned on
    # BENCHMARKS.md's search-efficiency replay (both tasks, tuning seeds apart from the reported ones):
    # successive halving from epoch 1 (rungs at epochs 1, 3, 9 ...: the top third goes on at each) with
    # random proposals reached the target with far less compute than the median rule judged from epoch 7,
    # and kept false prunes under 5 %. min_trials 0: no completed trials are needed (halving lets few
    # trials complete early on); while fewer than six trials have reached a rung, only the best goes on.
    rule: CrossTrialRuleName = "successive_halving"  # none, median or successive_halving (CROSS_TRIAL_RULES)
    warmup_epochs: int = 0  # epochs 1..warmup_epochs are never judged against other trials
    min_trials: int = 0  # completed trials needed before any trial is judged against them
    reduction_factor: int = 3  # successive_halving: keep the best 1/reduction_factor at each rung
    # successive_halving: a stop is a pause (stop reason "paused"): the trial's last epoch's state is kept
    # and a new trial linked by continued_from trains on from it once the trial ranks in the top
    # 1/reduction_factor at its rung (search.execution.promotion). Off: every stop is final.
    pause: bool = False

    def __post_init__(self) -> None:
        look_up(CROSS_TRIAL_RULES, self.rule, what="cross-trial rule")
        check_int(self.warmup_epochs, "cross_trial.warmup_epochs", low=0)
        check_int(self.min_trials, "cross_trial.min_trials", low=0)
        check_int(self.reduction_factor, "cross_trial.reduction_factor", low=2)
        if not isinstance(self.pause, bool):
            raise ConfigError(f"cross_trial.pause must be true or false but got {self.pause!r}")
        if self.pause and self.rule != "successive_halving":
            raise ConfigError(
                f"cross_trial.pause needs rule successive_halving (its rungs decide promotions) but the "
                f"rule is {self.rule!r}: set rule: successive_halving or pause: false"
            )

    def build(self) -> BasePruner:
        """A fresh Optuna pruner for this rule."""
        return look_up(CROSS_TRIAL_RULES, self.rule, what="cross-trial rule")(self)


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


# SuccessiveHalvingPruner's system attribute per completed rung: completed_rung_0, completed_rung_1 ...
RUNG_PREFIX = "completed_rung_"

CROSS_TRIAL_RULES: dict[str, Callable[[CrossTrialRule], BasePruner]] = {
    "none": _build_none,
    "median": _build_median,
    "successive_halving": _build_successive_halving,
}


class _AfterStartup(BasePruner):
    """Runs a pruner but overrules its "prune" until ``min_trials`` trials have completed.

    SuccessiveHalvingPruner has no startup count. The wrapped pruner is still called during start-up,
    so it records each trial's rung values and later trials compete against them.

    A continuation (``continued_from``) is shown to the wrapped pruner with the rungs its paused
    ancestors completed (in memory only), so it is next judged at the rung after them, as ASHA judges a
    promoted trial, and no rung counts the same run twice.
    """

    def __init__(self, pruner: BasePruner, *, min_trials: int) -> None:
        self._pruner = pruner
        self._min_trials = min_trials

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        inherited = inherited_rungs(study, trial)
        if inherited:
            trial = copy.copy(trial)
            trial.system_attrs = {**inherited, **trial.system_attrs}
        prune = self._pruner.prune(study, trial)
        n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        return prune and n_complete >= self._min_trials


def rung_values(attrs: Mapping[str, object]) -> dict[int, float]:
    """The rungs a trial completed and its val Dice at each, from its system attributes."""
    return {
        int(key.removeprefix(RUNG_PREFIX)): float(value)  # type: ignore[arg-type]
        for key, value in attrs.items()
        if key.startswith(RUNG_PREFIX)
    }


def inherited_rungs(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    """The rung attributes of the paused trials a continuation descends from (empty for other trials)."""
    origin = continued_from(trial.user_attrs)
    if origin is None:
        return {}
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    inherited: dict[str, Any] = {}
    while origin is not None and origin in by_number:
        ancestor = by_number[origin]
        rungs = {k: v for k, v in ancestor.system_attrs.items() if k.startswith(RUNG_PREFIX)}
        inherited = {**rungs, **inherited}
        origin = continued_from(ancestor.user_attrs)
    return inherited


def promotion_threshold(values: list[float], reduction_factor: int) -> float:
    """The lowest val Dice that passes a rung where ``values`` compete, as SuccessiveHalvingPruner
    promotes: the top 1/``reduction_factor``, the best alone while fewer than 2 x reduction_factor compete
    (sorted descending, the value at index ``max(len // eta - 1, 0)``)."""
    ranked = sorted(values, reverse=True)
    return ranked[max(len(ranked) // reduction_factor - 1, 0)]


def promotable(value: float, values: list[float], reduction_factor: int) -> bool:
    """Whether ``value`` passes the rung where ``values`` (which include it) compete."""
    return value >= promotion_threshold(values, reduction_factor)


def halving_rung(
    study: optuna.Study, attrs: Mapping[str, object], reduction_factor: int
) -> tuple[int, float, int]:
    """The rung at which successive halving pruned a trial, the Dice needed to pass it, and the field.

    ``attrs`` are the pruned trial's system attributes, where the pruner keeps its rung values.
    """
    rung = max(rung_values(attrs))
    key = f"{RUNG_PREFIX}{rung}"
    values = [float(t.system_attrs[key]) for t in study.get_trials(deepcopy=False) if key in t.system_attrs]
    return rung, promotion_threshold(values, reduction_factor), len(values)
