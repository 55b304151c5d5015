"""Which trial is the best: the one rule every command names a winner by.

A trial ranks by the val Dice of its best epoch when its checkpoint or its configuration can give that
model: a COMPLETE trial by its value (the mean over the folds under ``objective.folds``), a PRUNED one by
its best reported epoch (a trial stopped on a plateau after its peak, or as underperforming, keeps the
model of that epoch: its checkpoint or ``search.retrain`` gives it). A PRUNED trial that diverged is
left out (its configuration does not train stably), and so are FAILED (cut by a fault, not judged),
RUNNING and WAITING ones, and trials without a finite value. Ties go to the lower trial number.

The summary, the report, the progress line, the checkpoints' index, ``search.retrain`` and
``search.export`` all rank with :func:`rank_trials` (or, for values not yet told, :func:`rank_key`), so
that the same study always names the same winner.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from optuna.trial import FrozenTrial, TrialState

from search.outcome import recorded_best_epoch, stop_reason

# Stop reasons whose trials are no candidates, whatever their best epoch.
UNRANKED_REASONS: frozenset[str] = frozenset({"diverged"})


def trial_score(trial: FrozenTrial) -> float | None:
    """The val Dice of the trial's best epoch, or None when the trial is no candidate (module docstring)."""
    if trial.state == TrialState.COMPLETE:
        return trial.value if trial.value is not None and math.isfinite(trial.value) else None
    if trial.state != TrialState.PRUNED or stop_reason(trial.user_attrs) in UNRANKED_REASONS:
        return None
    return max((v for v in trial.intermediate_values.values() if math.isfinite(v)), default=None)


def rank_key(score: float, number: int) -> tuple[float, int]:
    """The sort key of a trial with ``score`` and ``number``: higher score first, then lower number."""
    return (-float(score), int(number))


def rank_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The candidate trials, best first (see the module docstring); the others are left out."""
    scored = [(score, t) for t in trials if (score := trial_score(t)) is not None]
    return [t for _, t in sorted(scored, key=lambda pair: rank_key(pair[0], pair[1].number))]


def best_trial(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """The winner (the first of :func:`rank_trials`), or None when no trial is a candidate yet."""
    ranked = rank_trials(trials)
    return ranked[0] if ranked else None


def best_epoch(trial: FrozenTrial) -> int | None:
    """The epoch of the trial's ranked value: a COMPLETE trial's stored best epoch (fold 1's under
    ``objective.folds``), else the first epoch with its best reported val Dice; None without either."""
    if trial.state == TrialState.COMPLETE and (epoch := recorded_best_epoch(trial)) is not None:
        return epoch
    finite = [(v, epoch) for epoch, v in trial.intermediate_values.items() if math.isfinite(v)]
    return max(finite, key=lambda pair: (pair[0], -pair[1]))[1] if finite else None
