"""The local backend: trials run one after another in this process, with ask/tell on the shared store.

Several such processes may work on one study at once (each is a "worker"): they share nothing but the
store, reap each other's lost trials, and stop when the study's budget is spent (``n_trials`` counted trials,
``compute`` full trials' worth of epochs: :mod:`search.execution.budget`) or the timeout passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError

from search.execution.objective import TrialContext, execute_trial
from search.execution.scheduling import POLL_SECONDS, claim_next, reap_and_retry, tell, tell_interrupted
from search.execution.study import Counts, count_trials
from search.outcome import TrialOutcome
from search.store.reaper import GRACE_SECONDS

logger = logging.getLogger(__name__)


def run_local(
    study: optuna.Study,
    ctx: TrialContext,
    *,
    n_trials: int | None = None,
    compute: float | None = None,
    timeout: float | None = None,
    grace_seconds: float = GRACE_SECONDS,
    on_trial: Callable[[optuna.trial.FrozenTrial, TrialOutcome, Counts], None] | None = None,
) -> Counts:
    """Run trials until the budget is spent or ``timeout`` seconds have passed.

    The budget: at most ``n_trials`` counted trials and ``compute`` full trials' worth of epochs (None:
    no such limit; :func:`search.execution.scheduling.claim_next`).

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
        claimed, counts, done = claim_next(
            study, ctx, n_trials=n_trials, compute=compute, timed_out=timed_out
        )
        if claimed is None:
            if done:
                return counts
            time.sleep(POLL_SECONDS)  # the last trials run elsewhere; wait for them or their reaping
            continue
        trial = claimed[0]
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
            tell_interrupted(study, trial, ctx)
            raise
        if on_trial is not None:
            on_trial(frozen, outcome, count_trials(study))
