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
    n_trials: int,
    timeout: float | None = None,
    grace_seconds: float = GRACE_SECONDS,
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
        claimed, counts = claim_next(study, ctx, n_trials=n_trials, timed_out=timed_out)
        if claimed is None:
            if timed_out or counts.finished >= n_trials:
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
