"""The local backend: trials run one after another in this process, with ask/tell on the shared store.

Several such processes may work on one study at once (each is a "worker"): they share nothing but the
store, reap each other's lost trials, and stop when the study has its ``n_trials`` counted trials.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from search.execution.objective import TrialContext, TrialOutcome, execute_trial
from search.execution.study import Counts, count_trials, enqueue_retry, make_sampler
from search.store.claims import claim_lock
from search.store.reaper import reap_lost_trials

logger = logging.getLogger(__name__)

# How long a worker waits before looking again when the last trials run in other workers.
POLL_SECONDS = 2.0


def reap_and_retry(study: optuna.Study, ctx: TrialContext, *, grace_seconds: float) -> list[int]:
    """Fail the study's trials whose worker is gone and enqueue their parameters again."""
    reaped = reap_lost_trials(ctx.storage, study.study_name, grace_seconds=grace_seconds)
    if reaped:
        by_number = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        for number in reaped:
            logger.warning("trial %d lost its worker: marked failed (worker_lost)", number)
            enqueue_retry(study, by_number[number], max_retries=ctx.spec.execution.max_retries)
    return reaped


def run_local(
    study: optuna.Study,
    ctx: TrialContext,
    *,
    n_trials: int,
    timeout: float | None = None,
    grace_seconds: float = 60.0,
    on_trial: Callable[[optuna.trial.FrozenTrial, TrialOutcome, Counts], None] | None = None,
) -> Counts:
    """Run trials until the study has ``n_trials`` counted trials or ``timeout`` seconds have passed.

    Returns:
        The study's counts at the end.

    Raises:
        KeyboardInterrupt: the run was interrupted; the running trial is already marked ``interrupted``
            and its parameters enqueued for the next run.
    """
    started = time.monotonic()
    while True:
        reap_and_retry(study, ctx, grace_seconds=grace_seconds)
        timed_out = timeout is not None and time.monotonic() - started >= timeout
        trial, counts = _claim(study, ctx, n_trials=n_trials, timed_out=timed_out)
        if trial is None:
            if timed_out or counts.finished >= n_trials:
                return counts
            time.sleep(POLL_SECONDS)  # the last trials run elsewhere; wait for them or their reaping
            continue
        try:
            outcome = execute_trial(ctx, trial)
            frozen = tell(study, trial, outcome)
        except UpdateFinishedTrialError:
            # Paused past the heartbeat grace (SIGSTOP, a suspended VM): the trial was reaped and
            # retried meanwhile, so this worker drops it and claims the next one.
            logger.warning(
                "trial %d was taken over while this worker was paused (reaped as lost, its retry queued): "
                "dropped here, going on with the next trial",
                trial.number,
            )
            continue
        except KeyboardInterrupt:
            frozen = study.tell(trial, state=TrialState.FAIL)
            # An interrupt says nothing about the parameters: the next run tries them once more.
            enqueue_retry(study, frozen, max_retries=ctx.spec.execution.max_retries + 1)
            raise
        if on_trial is not None:
            on_trial(frozen, outcome, count_trials(study))


def _claim(
    study: optuna.Study, ctx: TrialContext, *, n_trials: int, timed_out: bool
) -> tuple[optuna.Trial | None, Counts]:
    """Count and, if the budget has room, start the next trial, under the study's claim lock."""
    with claim_lock(ctx.storage.engine, study.study_name):
        counts = count_trials(study)
        if timed_out or counts.finished + counts.running >= n_trials:
            return None, counts
        study.sampler = make_sampler(ctx.spec, salt=len(study.get_trials(deepcopy=False)))
        return study.ask(), counts


def tell(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> optuna.trial.FrozenTrial:
    """Tell Optuna how the trial ended (the value only for a COMPLETE trial)."""
    if outcome.state == TrialState.COMPLETE:
        return study.tell(trial, outcome.value)
    return study.tell(trial, state=outcome.state)
