"""What every backend does around a trial: claim the next one, tell its outcome, reap and retry lost ones.

The local backend (:mod:`search.execution.local`) and the Ray driver and workers
(:mod:`search.execution.ray`) share these and nothing of each other's, so a study gets the same trial
numbers, budget counting and retries whichever backend runs it.
"""

from __future__ import annotations

import logging

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.execution.budget import Limits, measure_compute
from search.execution.objective import TrialContext
from search.execution.promotion import promote_paused
from search.execution.study import Counts, count_trials, enqueue_retry, make_sampler
from search.outcome import TrialOutcome
from search.store.claims import claim_lock
from search.store.reaper import reap_lost_trials

logger = logging.getLogger(__name__)

# How long a worker (or the Ray driver) waits before looking again when the last trials run elsewhere.
POLL_SECONDS = 2.0


def claim_next(
    study: optuna.Study,
    ctx: TrialContext,
    *,
    n_trials: int | None = None,
    compute: float | None = None,
    timed_out: bool,
) -> tuple[tuple[optuna.Trial, int] | None, Counts, bool]:
    """Count and, if the budget has room, start the next trial, under the study's claim lock.

    The budget is ``n_trials`` counted trials at most and ``compute`` full trials' worth of epochs
    (:mod:`search.execution.budget`; None: no such limit). The sampler is made afresh with the number of
    trials so far as its salt (``make_sampler``), so one worker replays the same proposals run after run
    while several workers do not draw alike. Under ``pruning.cross_trial.pause`` a paused trial that now
    ranks at its rung is continued before a new proposal (:mod:`search.execution.promotion`).

    Returns:
        The new trial and the salt its sampler was made with (None when the budget has no room or
        ``timed_out``), the counts it was judged on, and whether the study is done (timed out, or no
        trial may start and none runs).
    """
    limits = Limits(n_trials=n_trials, compute=compute)
    with claim_lock(ctx.storage.engine, study.study_name):
        counts = count_trials(study)
        spent = measure_compute(study, ctx.epochs, ctx.spec, compute=compute)
        if timed_out or not limits.may_start(counts, spent):
            return None, counts, timed_out or limits.reached(counts, spent)
        if ctx.pausing:  # a paused trial that ranks now goes before a new proposal
            promote_paused(study, ctx.spec.pruning.cross_trial.to_rule())
        salt = len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(ctx.spec, salt=salt)
        return (study.ask(), salt), counts, False


def tell(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> FrozenTrial:
    """Tell Optuna how the trial ended (the value only for a COMPLETE trial)."""
    if outcome.state == TrialState.COMPLETE:
        return study.tell(trial, outcome.value)
    return study.tell(trial, state=outcome.state)


def tell_interrupted(study: optuna.Study, trial: optuna.Trial, ctx: TrialContext) -> FrozenTrial:
    """Fail a trial its own process saw interrupted (already recorded as such) and enqueue it again."""
    frozen = study.tell(trial, state=TrialState.FAIL)
    retry_interrupted(study, frozen, ctx)
    return frozen


def retry_interrupted(study: optuna.Study, trial: FrozenTrial, ctx: TrialContext) -> bool:
    """Enqueue an interrupted trial's parameters again; returns whether it was.

    An interrupt says nothing about the parameters: they get one retry more than a lost worker's
    (``execution.max_retries + 1``), so a trial interrupted on its last retry still runs on resume.
    """
    return enqueue_retry(study, trial, max_retries=ctx.spec.execution.max_retries + 1)


def reap_and_retry(study: optuna.Study, ctx: TrialContext, *, grace_seconds: float) -> list[int]:
    """Fail the study's trials whose worker is gone and enqueue their parameters again."""
    reaped = reap_lost_trials(ctx.storage, study.study_name, grace_seconds=grace_seconds)
    if reaped:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        for number in reaped:
            logger.warning("trial %d lost its worker: marked failed (worker_lost)", number)
            enqueue_retry(study, by_number[number], max_retries=ctx.spec.execution.max_retries)
    return reaped
