"""How a trial ended: the one vocabulary the backends write into the store and the reports read from it.

A stopped or failed trial carries four user attributes (:data:`STOP_REASON`, :data:`STOP_EPOCH`,
:data:`STOP_DETAIL`, :data:`STOP_MESSAGE`), written by :func:`record_stop` and nothing else; every trial
that trained carries :data:`DIAGNOSIS` (one of :data:`DIAGNOSES`) and :data:`DIAGNOSIS_SUMMARY`.

To add a stop reason or a diagnosis label, add it (with its phrase) to :data:`STOP_REASONS` or
:data:`DIAGNOSES`; the checks, the budget counting, the findings and the plots take it from there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState

# Trial user attributes, as stored (optuna-dashboard and SQL queries read them by these names).
STOP_REASON = "stop_reason"  # one of STOP_REASONS
STOP_EPOCH = "stop_epoch"  # the 1-based epoch of the decision (the last stored epoch for a failure; 0: none)
STOP_DETAIL = "stop_detail"  # the numbers behind the decision, JSON-safe
STOP_MESSAGE = "stop_message"  # one human line
DIAGNOSIS = "diagnosis"  # one of DIAGNOSES
DIAGNOSIS_SUMMARY = "diagnosis_summary"  # one line: what was seen, the likely cause and the fix
DIAGNOSIS_CHANGES = "diagnosis_changes"  # the advice as settings, e.g. {"learning_rate": 0.001}
DIAGNOSIS_CANDIDATES = "diagnosis_candidates"  # an "unclear" diagnosis's two closest causes
BEST_EPOCH = "best_epoch"  # the epoch of a COMPLETE trial's value (fold 1's under objective.folds)
FOLD_VAL_DICE = "fold_val_dice"  # objective.folds: each fold's best-epoch val Dice, fold 1 first
FOLD_BEST_EPOCHS = "fold_best_epochs"  # objective.folds: the epochs of those values

# Why a trial stopped or failed -> how it reads after "N trials with ..." (report findings), in the order
# findings list them. Who decides: the plateau rule (plateau, diverged), the cross-trial rule
# (underperforming), the trial's own process (out_of_memory, error, interrupted) or whoever finds its
# worker gone (worker_lost: the reaper, the Ray driver).
STOP_REASONS: dict[str, str] = {
    "plateau": "were stopped on a plateau",  # own val loss stopped improving
    "diverged": "diverged",  # own val loss became NaN/inf or blew up
    "underperforming": "were pruned as underperforming",  # val Dice behind the other trials
    "out_of_memory": "ran out of memory",  # the accelerator ran out of memory
    "error": "failed with an error",  # training raised (bad settings, a bug on a worker)
    "worker_lost": "lost their worker",  # the process or node running the trial went away
    "interrupted": "were interrupted",  # the user or the scheduler stopped the study
}
# Failures that say nothing about the parameters: the trial does not count and runs again.
RETRYABLE_REASONS: frozenset[str] = frozenset({"worker_lost", "interrupted"})

# Diagnosis labels (search.diagnosis) -> how they read after "N trials with ...", in the order findings
# list them, which is also the order search.diagnosis checks the causes in (the first clear one wins).
# HEALTHY, TOO_EARLY and UNCLEAR are labels but never findings.
DIAGNOSES: dict[str, str] = {
    "diverged": "diverged",
    "input_scale": "saw unnormalised inputs without normalisation layers",
    "vanishing_gradients": "had vanishing gradients",
    "stalled": "stalled",
    "no_signal": "found nothing learnable (val Dice at chance)",
    "background_only": "predicted background only",
    "foreground_flood": "flooded the image with foreground",
    "unstable": "were unstable",
    "overfitting": "overfitted",
    "underfitting": "underfitted",
    "behind_peers": "stayed at chance while the other trials learned",
    "too_early": "were stopped before their curves could be judged",
    "healthy": "were healthy",
    "unclear": "had an unclear diagnosis",
}
HEALTHY = "healthy"
TOO_EARLY = "too_early"  # stopped before a cause could show: what was seen, and at which epoch
UNCLEAR = "unclear"


@dataclass(frozen=True)
class StopDecision:
    """Why a trial was stopped or failed, at which epoch, and the numbers behind it.

    Raises:
        ValueError: ``reason`` is not one of :data:`STOP_REASONS`.
    """

    reason: str  # one of STOP_REASONS
    epoch: int  # 1-based epoch at which the decision was taken (0: before the first epoch ended)
    detail: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable, no NaN
    message: str | None = None  # one human line: what was seen, with the numbers (None: not stored)

    def __post_init__(self) -> None:
        if self.reason not in STOP_REASONS:
            raise ValueError(f"stop reason must be one of {', '.join(STOP_REASONS)} but got {self.reason!r}")

    def to_dict(self) -> dict[str, object]:
        """The decision as plain data, for the store and the reports."""
        detail = dict(self.detail)
        return {"reason": self.reason, "epoch": self.epoch, "detail": detail, "message": self.message}


@dataclass
class TrialOutcome:
    """How a trial ended, ready for ``study.tell``."""

    state: TrialState
    value: float | None = None  # the best val Dice of a COMPLETE trial
    reason: str | None = None  # stop_reason of a PRUNED or FAILED trial
    message: str | None = None  # one line for the progress display


# Writes one user attribute of one trial: ``trial.set_user_attr`` inside its worker, or
# ``functools.partial(storage.set_trial_user_attr, trial_id)`` from outside.
AttrWriter = Callable[[str, Any], None]


def record_stop(write: AttrWriter, decision: StopDecision) -> None:
    """Store why a trial stopped or failed (before it is told: Optuna refuses writes to finished trials)."""
    write(STOP_REASON, decision.reason)
    write(STOP_EPOCH, int(decision.epoch))
    write(STOP_DETAIL, dict(decision.detail))
    if decision.message is not None:
        write(STOP_MESSAGE, decision.message)


def stop_reason(user_attrs: Mapping[str, Any]) -> str | None:
    """The stop reason a trial's user attributes hold, or None."""
    reason = user_attrs.get(STOP_REASON)
    return reason if isinstance(reason, str) and reason else None


def is_retryable(user_attrs: Mapping[str, Any]) -> bool:
    """Whether a FAILed trial with these user attributes is run again instead of counted."""
    return stop_reason(user_attrs) in RETRYABLE_REASONS


def json_number(value: float) -> float | str:
    """``value`` as a JSON-safe number: finite floats as they are, NaN/inf as "nan", "inf" or "-inf"."""
    value = float(value)
    return value if math.isfinite(value) else str(value)
