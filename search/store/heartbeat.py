"""Signs of life of a running trial: which process runs it, and a heartbeat while it trains.

Optuna's own heartbeat only runs inside ``study.optimize()``; our workers use ask/tell, so a trial whose
process was killed (out of memory, node lost, SIGKILL) would stay RUNNING forever and block the study's
budget. A running trial's :class:`Heartbeat` records which process runs it (trial user attributes
``worker_host``, ``worker_pid``, ``worker_started``) and refreshes a row of ``unet_search_heartbeats``;
:func:`search.store.reaper.reap_lost_trials` fails the trials whose process is gone (same host) or whose
beats stopped.

Worker identity is the host name: two containers that share a host name but not a PID namespace look
like one host, and must not run workers of the same study.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
import threading
from types import TracebackType

import optuna
import sqlalchemy as sa
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages._rdb import models as optuna_models
from optuna.trial import TrialState

from search.outcome import WorkerIdentity, record_worker
from search.processes import process_start_time
from search.store.engine import HEARTBEATS
from search.store.errors import StoreLostError
from search.store.retry import call_with_retry
from search.store.rows import upsert_row
from unet.errors import ConfigError

logger = logging.getLogger(__name__)

# Seconds between a running trial's heartbeats, well under the reaper's grace period (``GRACE_SECONDS``).
HEARTBEAT_INTERVAL_S = 10.0

_TRIALS = optuna_models.TrialModel.__table__


def worker_identity() -> WorkerIdentity:
    """Return this process's identity: ``host`` name, ``pid`` and ``started`` (start time, epoch seconds).

    ``started`` tells a live worker from an unrelated process that got the same pid later; it is None
    where ``/proc`` is missing (not Linux), and pid reuse then goes unnoticed.
    """
    pid = os.getpid()
    return WorkerIdentity(host=socket.gethostname(), pid=pid, started=process_start_time(pid))


def trial_is_running(engine: sa.Engine, trial_id: int) -> bool:
    """Whether the trial is still RUNNING in the store (not finished by its worker or a reaper)."""
    query = sa.select(_TRIALS.c.state).where(_TRIALS.c.trial_id == int(trial_id))

    def read() -> object:
        with engine.connect() as connection:
            return connection.execute(query).scalar()

    return call_with_retry(read, engine=engine, what="read a trial's state") == TrialState.RUNNING


def raise_if_taken(engine: sa.Engine, trial: optuna.Trial) -> None:
    """Raise UpdateFinishedTrialError if another process finished ``trial`` (e.g. reaped it as lost).

    A worker paused past the reaper's grace period (SIGSTOP, a suspended VM, a long GC pause) wakes up
    to a trial that was failed and retried meanwhile; it checks this before writing the next epoch.
    """
    if not trial_is_running(engine, trial._trial_id):
        raise UpdateFinishedTrialError(
            f"trial {trial.number} was finished by another process (reaped as lost?) while it ran here"
        )


class Heartbeat:
    """Context manager that marks a running trial as alive while its worker trains it.

    On entry it stores the worker identity in the trial's user attributes and writes a first beat;
    a daemon thread then refreshes the beat every ``interval`` seconds until exit, when a last beat
    gives the worker a full grace period to ``tell()`` the outcome. A failed beat is logged in one line
    and retried at the next interval; it never interrupts training. A beat that finds the trial no
    longer RUNNING (reaped while the worker was paused) stops beating and sets :attr:`lost`.

    Args:
        storage: the study store (:func:`search.store.engine.open_storage`).
        study_name: the trial's study.
        trial_id: Optuna's ``trial._trial_id``.
        interval: seconds between beats; must be well under the reaper's grace period.

    Raises:
        ConfigError: ``interval`` is not positive.
    """

    def __init__(
        self,
        storage: optuna.storages.RDBStorage,
        study_name: str,
        trial_id: int,
        *,
        interval: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        if not interval > 0:
            raise ConfigError(f"heartbeat interval must be > 0 seconds but got {interval!r}")
        self.storage = storage
        self.study_name = study_name
        self.trial_id = int(trial_id)
        self.interval = float(interval)
        self.beats = 0  # beats written so far, for logs and tests
        self.lost = False  # another process finished the trial: nothing more is written for it
        self._identity = WorkerIdentity(None, None, None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._identity = worker_identity()
        record_worker(functools.partial(self.storage.set_trial_user_attr, self.trial_id), self._identity)
        self._beat()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-trial-{self.trial_id}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._beat_logged()

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and not self.lost:
            self._beat_logged()

    def _beat_logged(self) -> None:
        # Whatever breaks a beat (server restart, lock timeout) must not end the thread or the training;
        # the next beat tries again, and the log says why this one failed in one line.
        try:
            self._beat()
        except StoreLostError:
            logger.debug("heartbeat of trial %d: the store is gone", self.trial_id)  # the service says so
        except (sa.exc.SQLAlchemyError, StorageInternalError) as e:
            cause = e.__cause__ if isinstance(e, StorageInternalError) and e.__cause__ else e
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            logger.warning(
                "heartbeat of trial %d failed (%s), next try in %.3g s", self.trial_id, first, self.interval
            )
        except Exception:
            logger.warning(
                "heartbeat of trial %d failed, next try in %.3g s",
                self.trial_id,
                self.interval,
                exc_info=True,
            )

    def _beat(self) -> None:
        if self.lost or not trial_is_running(self.storage.engine, self.trial_id):
            self.lost = True
            return
        values = {
            "study_name": self.study_name,
            "host": self._identity.host,
            "pid": self._identity.pid,
            "beat_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        }
        upsert_row(self.storage.engine, HEARTBEATS, {"trial_id": self.trial_id, **values}, ("trial_id",))
        self.beats += 1
