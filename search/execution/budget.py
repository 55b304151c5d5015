"""The study's budget: compute spent and still to come, the cap on trials, and whether another trial starts.

Compute is counted in epochs over the training images, the unit of ``budget.compute``: one full trial is
``max_epochs`` epochs (times ``objective.folds`` under k-fold cross-validation). Within a study every
epoch trains the same images, so epochs measure it exactly. What a study spent is read from the store:
the epoch table's rows of every trial (fold 1's under k-fold), plus the later folds of a COMPLETE k-fold
trial, which train ``max_epochs`` each and store no rows. A trial that was lost or interrupted spent what
it trained, and its retry spends again: both count. Resuming a study therefore counts what it spent
before. A continuation of a paused trial (``search.execution.promotion``) stores rows for its own epochs
only, so it counts those, and no epoch is counted twice.

A new trial starts only when one more full trial fits beside what is spent and what the running trials
may still train (each up to a full trial): the budget is never exceeded, and at most one full trial's
worth is left unspent at the end. Every epoch that pruning saves goes to later trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from search.execution.study import Counts
from search.outcome import FOLD_VAL_DICE, continued_after
from search.spec.schema import StudySpec
from search.store.epochs import EpochStore


@dataclass(frozen=True)
class Compute:
    """A study's compute in epochs: spent, reserved by the running trials, and the budget."""

    spent: int  # epochs its trials trained
    reserved: int  # epochs the running trials may still train (up to a full trial each)
    trial_epochs: int  # epochs of one full trial (max_epochs x folds)
    budget: int | None  # the budget in epochs; None without a compute budget

    @property
    def spent_trials(self) -> float:
        """What was spent, in full-trial equivalents."""
        return self.spent / self.trial_epochs

    @property
    def left(self) -> int | None:
        """Epochs of the budget not spent yet (None without a compute budget)."""
        return None if self.budget is None else max(self.budget - self.spent, 0)

    def fits_another(self) -> bool:
        """Whether one more full trial fits beside what is spent and reserved."""
        return self.budget is None or self.spent + self.reserved + self.trial_epochs <= self.budget

    def describe(self) -> str:
        """``4.2 of 16 full trials (42 of 160 epochs)``, or what was spent without a budget."""
        if self.budget is None:
            return f"{self.spent_trials:.1f} full trials ({self.spent} epochs)"
        return (
            f"{self.spent_trials:.1f} of {self.budget / self.trial_epochs:g} full trials "
            f"({self.spent} of {self.budget} epochs)"
        )


@dataclass(frozen=True)
class Limits:
    """What a run may start: at most ``n_trials`` counted trials and ``compute`` full trials' worth."""

    n_trials: int | None = None
    compute: float | None = None  # in full trials

    @classmethod
    def of(cls, spec: StudySpec) -> Limits:
        """The spec's budget (the wall-clock timeout is the backends' own)."""
        return cls(n_trials=spec.budget.n_trials, compute=spec.budget.compute)

    def may_start(self, counts: Counts, compute: Compute) -> bool:
        """Whether another trial may start now."""
        if self.n_trials is not None and counts.finished + counts.running >= self.n_trials:
            return False
        return compute.fits_another()

    def reached(self, counts: Counts, compute: Compute) -> bool:
        """Whether the study is done: no trial may start and none runs (a running one may yet free room)."""
        return counts.running == 0 and not self.may_start(counts, compute)


def trial_epochs(spec: StudySpec) -> int:
    """Epochs of one full trial: ``max_epochs`` on each of the objective's folds."""
    return spec.budget.max_epochs * spec.objective.folds


def measure_compute(
    study: optuna.Study, epochs: EpochStore, spec: StudySpec, *, compute: float | None = None
) -> Compute:
    """What the study spent (from the store) and its running trials reserve, against ``compute``.

    Args:
        study: the study.
        epochs: the store's epoch table.
        spec: the study's spec (max_epochs, folds).
        compute: the budget in full trials (None: none; only what is spent is measured).
    """
    per_trial = epochs.epochs_per_trial(study.study_name)
    full = trial_epochs(spec)
    max_epochs = spec.budget.max_epochs
    spent = reserved = 0
    for trial in study.get_trials(deepcopy=False):
        trained = per_trial.get(trial._trial_id, 0)
        folds = trial.user_attrs.get(FOLD_VAL_DICE)
        if trial.state == TrialState.COMPLETE and folds:
            trained += (len(folds) - 1) * max_epochs
        spent += trained
        if trial.state == TrialState.RUNNING:  # a continuation trains only the epochs after its start
            reserved += max(full - continued_after(trial) - trained, 0)
    budget = None if compute is None else round(compute * full)
    return Compute(spent=spent, reserved=reserved, trial_epochs=full, budget=budget)


def describe_budget(spec: StudySpec) -> str:
    """The spec's budget in words: ``compute of 16 full trials (160 epochs), at most 20 trials, ...``."""
    budget = spec.budget
    parts = []
    if budget.compute is not None:
        parts.append(
            f"compute of {budget.compute:g} full trials ({round(budget.compute * trial_epochs(spec))} epochs)"
        )
    if budget.n_trials is not None:
        parts.append(f"at most {budget.n_trials} trials")
    if budget.timeout is not None:
        parts.append(f"no new trial after {budget.timeout:g} s")
    return ", ".join(parts) + f"; up to {budget.max_epochs} epochs a trial"
