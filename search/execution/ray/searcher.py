"""The driver's side of a Ray run: a Tune ``Searcher`` whose trials are claimed from the study store.

Ray's own ``OptunaSearch`` keeps a second copy of the study's truth in the driver: it tells Optuna a trial
that a Tune scheduler stopped as COMPLETE, loses the epoch that triggered the stop, and leaves its trials
RUNNING when the driver dies. :class:`StoreSearcher` keeps nothing but bookkeeping: ``suggest`` claims the
next Optuna trial exactly as the local backend does (:func:`search.execution.scheduling.claim_next`) and
hands Tune only the trial's id; the worker does the rest (:mod:`search.execution.ray.worker`). Tune's own
retries are off; a trial whose worker died is failed as ``worker_lost`` here and retried through the
store, so the study ends with its exact trial count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from search.execution.objective import TrialContext
from search.execution.ray.worker import EPOCH_KIND, RESULT_KIND, SKIPPED, START_FAILED, TAKEN
from search.execution.scheduling import POLL_SECONDS, claim_next, reap_and_retry, retry_interrupted
from search.execution.study import Counts, count_trials, enqueue_retry
from search.outcome import TrialOutcome, ray_node, trial_worker
from search.store.heartbeat import Heartbeat
from search.store.reaper import GRACE_SECONDS, fail_trial
from unet.history import EPOCH_FIELDS, EpochRecord

logger = logging.getLogger(__name__)

# Consecutive trials that fail before the worker ran any of our code (it could not import the project,
# reach the store or read the data) after which the run stops: the next ones would fail the same way.
MAX_START_FAILURES = 3

OnTrial = Callable[[FrozenTrial, TrialOutcome, Counts], None]
OnEpoch = Callable[[optuna.Trial, EpochRecord], None]


@dataclass
class _Claim:
    """A trial this driver claimed and handed to Tune, and the heartbeat that vouches for it meanwhile."""

    trial: optuna.Trial
    heartbeat: Heartbeat


class StoreSearcher(Searcher):
    """Claims trials from the study store for Tune, and records what Tune says about their ends.

    Until Tune reports a trial's end, this driver beats for it: a trial that waits for resources, or
    whose worker is still loading the data, is never taken for lost by a reaper (its worker attributes
    name the driver until the worker's own heartbeat takes over).

    Args:
        study: the study (its sampler is replaced before every claim).
        ctx: the driver's trial context (spec, store, heartbeat interval).
        n_trials: at most this many counted trials (None: no cap).
        compute: full trials' worth of epochs to spend (None: no compute limit; search.execution.budget).
        timeout: seconds after which no new trial starts.
        grace_seconds: how long a remote worker may stay silent before its trial is failed.
        on_trial: called after every trial's end with the trial, its outcome and the counts.
        on_epoch: called for every epoch a worker reports (only when the workers were asked to).
    """

    def __init__(
        self,
        study: optuna.Study,
        ctx: TrialContext,
        *,
        n_trials: int | None = None,
        compute: float | None = None,
        timeout: float | None = None,
        grace_seconds: float = GRACE_SECONDS,
        on_trial: OnTrial | None = None,
        on_epoch: OnEpoch | None = None,
    ) -> None:
        super().__init__()
        self.study = study
        self.ctx = ctx
        self.n_trials = n_trials
        self.compute = compute
        self.timeout = timeout
        self.grace_seconds = grace_seconds
        self.on_trial = on_trial
        self.on_epoch = on_epoch
        self.claims: dict[str, _Claim] = {}  # by Tune trial id
        self.abort_message: str | None = None  # why the run must stop (set by repeated start failures)
        self._started = time.monotonic()
        self._next_poll = 0.0
        self._start_failures = 0

    # Tune accepts Searcher.FINISHED (a str) from suggest, which its type hint leaves out.
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        """Claim the next trial: its ids, None to be asked again later, or ``FINISHED``."""
        if self.abort_message is not None:
            return Searcher.FINISHED
        now = time.monotonic()
        if now < self._next_poll:
            return None  # Tune asks many times a second; the store is asked at most every POLL_SECONDS
        reap_and_retry(self.study, self.ctx, grace_seconds=self.grace_seconds)
        timed_out = self.timeout is not None and now - self._started >= self.timeout
        claimed, _, done = claim_next(
            self.study, self.ctx, n_trials=self.n_trials, compute=self.compute, timed_out=timed_out
        )
        if claimed is None:
            if done:
                return Searcher.FINISHED
            # The last trials are running (here or elsewhere): one may yet be lost and retried.
            self._next_poll = now + POLL_SECONDS
            return None
        trial, salt = claimed
        heartbeat = Heartbeat(
            self.ctx.storage, self.study.study_name, trial._trial_id, interval=self.ctx.heartbeat_interval
        )
        heartbeat.__enter__()
        self.claims[trial_id] = _Claim(trial, heartbeat)
        logger.info("trial %d handed to Tune as %s", trial.number, trial_id)
        return {"optuna_trial_id": trial._trial_id, "trial_number": trial.number, "salt": salt}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Show a reported epoch on the progress line."""
        claim = self.claims.get(trial_id)
        if claim is None or self.on_epoch is None or result.get("kind") != EPOCH_KIND:
            return
        self.on_epoch(claim.trial, EpochRecord(**{name: result[name] for name in EPOCH_FIELDS}))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Record how Tune says the trial ended; a lost worker fails it as ``worker_lost`` and retries it."""
        claim = self.claims.pop(trial_id, None)
        if claim is None:
            return
        claim.heartbeat.__exit__(None, None, None)
        self._next_poll = 0.0  # a place in the budget may have opened: look again at once
        final = result if result is not None and result.get("kind") == RESULT_KIND else None
        state = final["state"] if final is not None and not error else None
        if state in (SKIPPED, TAKEN):
            return  # another process finished it (and enqueued its retry)
        if final is None or state is None or state == START_FAILED:
            outcome = self._lost(claim.trial, final["message"] if final is not None else None)
        else:
            self._start_failures = 0
            outcome = TrialOutcome(
                TrialState[state], value=final["value"], reason=final["reason"], message=final["message"]
            )
        if outcome is not None and self.on_trial is not None:
            frozen = self.ctx.storage.get_trial(claim.trial._trial_id)
            self.on_trial(frozen, outcome, count_trials(self.study))

    def _lost(self, trial: optuna.Trial, start_error: str | None) -> TrialOutcome | None:
        """Fail a trial whose worker Tune lost (or that could not start) and enqueue its retry."""
        frozen = self.ctx.storage.get_trial(trial._trial_id)
        never_started = start_error is not None or ray_node(frozen) is None
        if never_started:
            self._start_failures += 1
            if self._start_failures >= MAX_START_FAILURES:
                self.abort_message = (
                    f"{self._start_failures} trials in a row failed before training started on the Ray "
                    f"workers ({start_error or 'the worker process died or could not import the project'})"
                    f": check that every node has this project installed and can reach the store and the "
                    f"data (--verbose shows Ray's errors)"
                )
        else:
            self._start_failures = 0
        if frozen.state != TrialState.RUNNING:
            return None  # already reaped by reap_and_retry, which enqueued the retry
        cause = f"could not start: {start_error}" if start_error else "Ray lost its worker process or node"
        worker = trial_worker(frozen)
        detail = {
            "host": worker.host,
            "pid": worker.pid,
            "ray_node_id": ray_node(frozen),
            "cause": cause,
        }
        last_epoch = self.ctx.epochs.last_epoch(trial._trial_id)
        message = f"{cause} after {last_epoch} epoch(s)"
        storage = self.ctx.storage
        if not fail_trial(
            storage, frozen, reason="worker_lost", stop_epoch=last_epoch, detail=detail, message=message
        ):
            return None
        max_retries = self.ctx.spec.execution.max_retries
        retried = enqueue_retry(self.study, storage.get_trial(trial._trial_id), max_retries=max_retries)
        return TrialOutcome(
            TrialState.FAIL, reason="worker_lost", message=message + ("; retried" if retried else "")
        )

    def abandon(self) -> list[int]:
        """Fail the claimed trials that are still RUNNING as ``interrupted`` and enqueue them again.

        Called when the driver stops before Tune ended its trials (Ctrl-C, SIGTERM, an error), after the
        workers were stopped: the next run tries their parameters again, as after a local interrupt.

        Returns:
            The numbers of the trials failed here.
        """
        failed = []
        for claim in self.claims.values():
            claim.heartbeat.__exit__(None, None, None)
            frozen = self.ctx.storage.get_trial(claim.trial._trial_id)
            if frozen.state != TrialState.RUNNING:
                continue
            epochs = self.ctx.epochs.last_epoch(frozen._trial_id)
            if fail_trial(
                self.ctx.storage,
                frozen,
                reason="interrupted",
                stop_epoch=epochs,
                detail={"epochs_done": epochs},
                message=f"interrupted after {epochs} epoch(s)",
            ):
                retry_interrupted(self.study, self.ctx.storage.get_trial(frozen._trial_id), self.ctx)
                failed.append(frozen.number)
        self.claims.clear()
        return sorted(failed)

    # The study store holds the whole state: there is nothing of Tune's to save or restore. Tune still
    # pickles its Tuner (for Tuner.restore, never used here), so a pickled searcher is an inert stub.
    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the study store is the state."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: the study store is the state."""

    def __getstate__(self) -> dict[str, Any]:
        return {"study_name": self.study.study_name, "n_trials": self.n_trials}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.abort_message = (
            f"a restored Tune experiment cannot continue study {state['study_name']!r}: "
            f"run the same search.run command again, it resumes from the study store"
        )
        self.claims = {}
