"""Finding trials whose worker died: a heartbeat per running trial, and a reaper that fails lost trials.

Optuna's own heartbeat only runs inside ``study.optimize()``; our workers use ask/tell, so a trial whose
process was killed (out of memory, node lost, SIGKILL) would stay RUNNING forever and block the study's
budget. A running trial's :class:`Heartbeat` records which process runs it (trial user attributes
``worker_host``, ``worker_pid``, ``worker_started``) and refreshes a row of ``unet_search_heartbeats``;
:func:`reap_lost_trials` fails the trials whose process is gone (same host) or whose beats stopped.

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
from pathlib import Path
from types import TracebackType
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from search.outcome import StopDecision, record_stop
from search.store.engine import HEARTBEATS, StoreError
from search.store.epochs import EpochStore
from search.store.rows import upsert_row
from unet.errors import ConfigError

logger = logging.getLogger(__name__)

# Process start times are compared to this many seconds: /proc counts in clock ticks (1/100 s).
_START_TOLERANCE_S = 0.05


def worker_identity() -> dict[str, Any]:
    """Return this process's identity: ``host`` name, ``pid`` and ``started`` (start time, epoch seconds).

    ``started`` tells a live worker from an unrelated process that got the same pid later; it is None
    where ``/proc`` is missing (not Linux), and pid reuse then goes unnoticed.
    """
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": process_start_time(pid)}


def process_start_time(pid: int) -> float | None:
    """Return when process ``pid`` started, in epoch seconds rounded to 1/100 s, or None if unknown."""
    try:
        return _start_time(_proc_stat_fields(pid))
    except (OSError, ValueError, IndexError):
        return None


def _proc_stat_fields(pid: int) -> list[str]:
    """Fields 3 onwards of ``/proc/<pid>/stat`` (state first).

    The command name (field 2) may hold spaces and parentheses, so the split starts after its last ")".
    """
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _start_time(fields: list[str]) -> float:
    # starttime is field 22 (index 19 here), in clock ticks since boot.
    return round(_boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK"), 2)


@functools.cache
def _boot_time() -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise ValueError("/proc/stat has no btime line")


class Heartbeat:
    """Context manager that marks a running trial as alive while its worker trains it.

    On entry it stores the worker identity in the trial's user attributes and writes a first beat;
    a daemon thread then refreshes the beat every ``interval`` seconds until exit, when a last beat
    gives the worker a full grace period to ``tell()`` the outcome. A failed beat is logged with its
    traceback and retried at the next interval; it never interrupts training.

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
        interval: float = 10.0,
    ) -> None:
        if not interval > 0:
            raise ConfigError(f"heartbeat interval must be > 0 seconds but got {interval!r}")
        self.storage = storage
        self.study_name = study_name
        self.trial_id = int(trial_id)
        self.interval = float(interval)
        self.beats = 0  # beats written so far, for logs and tests
        self._identity: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._identity = worker_identity()
        for key, value in self._identity.items():
            self.storage.set_trial_user_attr(self.trial_id, f"worker_{key}", value)
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
        while not self._stop.wait(self.interval):
            self._beat_logged()

    def _beat_logged(self) -> None:
        # Broad on purpose: whatever breaks a beat (server restart, lock timeout) must not end the
        # thread or the training; the next beat tries again, and the log says why this one failed.
        try:
            self._beat()
        except Exception:
            logger.warning(
                "heartbeat of trial %d failed, next try in %.3g s",
                self.trial_id,
                self.interval,
                exc_info=True,
            )

    def _beat(self) -> None:
        values = {
            "study_name": self.study_name,
            "host": self._identity["host"],
            "pid": self._identity["pid"],
            "beat_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        }
        upsert_row(self.storage.engine, HEARTBEATS, {"trial_id": self.trial_id, **values}, ("trial_id",))
        self.beats += 1


def reap_lost_trials(
    storage: optuna.storages.RDBStorage,
    study_name: str,
    *,
    grace_seconds: float = 60,
    now: dt.datetime | None = None,
) -> list[int]:
    """Fail the study's RUNNING trials whose worker is gone, with ``stop_reason="worker_lost"``.

    A trial is lost when its worker ran on this host and the process is gone or its pid now belongs
    to another process; or, for workers elsewhere (or not yet identified), when its last beat, or its
    start if it never beat, is more than ``grace_seconds`` old. A worker process alive on this host is
    never judged by its beats: a beat delayed by a busy database must not fail a healthy trial. Lost
    trials get user attributes ``stop_reason``, ``stop_epoch`` (last stored epoch, 0 if none) and
    ``stop_detail`` (host, pid, cause, age of the last beat), then state FAIL. Several reapers may
    run at once and workers may finish meanwhile: a trial someone else finished is skipped.

    Args:
        storage: the study store.
        study_name: the study to check.
        grace_seconds: how long a remote worker may stay silent before its trial is failed.
        now: the time to judge ages at (default: now); naive means UTC.

    Returns:
        The numbers of the trials this call failed, ascending.

    Raises:
        ConfigError: ``grace_seconds`` is not positive.
        StoreError: no study has that name.
    """
    if not grace_seconds > 0:
        raise ConfigError(f"grace_seconds must be > 0 but got {grace_seconds!r}")
    now = _as_utc(now)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError as e:
        raise StoreError(f"no study named {study_name!r} in the store: check the study name") from e
    running = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    query = sa.select(HEARTBEATS.c.trial_id, HEARTBEATS.c.beat_at).where(
        HEARTBEATS.c.trial_id.in_([trial._trial_id for trial in running])
    )
    with storage.engine.connect() as connection:
        beats = dict(connection.execute(query).all())
    epochs = EpochStore(storage.engine)
    reaped = []
    for trial in running:
        beat = beats.get(trial._trial_id)
        last_sign = _as_utc(beat) if beat is not None else _as_utc(trial.datetime_start, local=True)
        cause = _lost_cause(trial, (now - last_sign).total_seconds(), beat is not None, grace_seconds)
        if cause is None:
            continue
        detail = {
            "host": trial.user_attrs.get("worker_host"),
            "pid": trial.user_attrs.get("worker_pid"),
            "cause": cause,
            "last_beat_age_s": round((now - last_sign).total_seconds(), 1) if beat is not None else None,
        }
        if _fail_trial(storage, trial, detail, epochs.last_epoch(trial._trial_id)):
            reaped.append(trial.number)
    return sorted(reaped)


def _lost_cause(trial: FrozenTrial, silent_s: float, has_beat: bool, grace_seconds: float) -> str | None:
    """Why the trial's worker counts as lost, or None while it may still be alive."""
    host, pid = trial.user_attrs.get("worker_host"), trial.user_attrs.get("worker_pid")
    if host == socket.gethostname() and isinstance(pid, int):
        state = _local_process_state(pid, trial.user_attrs.get("worker_started"))
        return None if state == "alive" else state
    if silent_s > grace_seconds:
        return "heartbeat stale" if has_beat else "no heartbeat since start"
    return None


def _local_process_state(pid: int, recorded_start: object) -> str:
    """Return "alive", "process gone" or "pid reused by another process" for a pid on this host."""
    if not Path("/proc/self/stat").exists():  # not Linux: existence is all that can be told
        return "alive" if _pid_exists(pid) else "process gone"
    try:
        fields = _proc_stat_fields(pid)
    except OSError:
        return "process gone"
    if fields[0] in ("Z", "X"):  # exited, not yet collected by its parent
        return "process gone"
    if isinstance(recorded_start, int | float):
        started = process_start_time(pid)
        if started is not None and abs(started - recorded_start) > _START_TOLERANCE_S:
            return "pid reused by another process"
    return "alive"


def _fail_trial(
    storage: optuna.storages.RDBStorage, trial: FrozenTrial, detail: dict[str, Any], stop_epoch: int
) -> bool:
    """Record why the trial stopped and fail it; False when another process finished it first."""
    return fail_trial(storage, trial, reason="worker_lost", stop_epoch=stop_epoch, detail=detail)


def fail_trial(
    storage: optuna.storages.RDBStorage,
    trial: FrozenTrial,
    *,
    reason: str,
    stop_epoch: int,
    detail: dict[str, Any],
    message: str | None = None,
) -> bool:
    """Fail a RUNNING trial from outside its worker, recording why (``stop_reason`` and the rest).

    Used by the reaper here and by backends that learn of a loss another way (Ray reporting a dead
    worker, an interrupted driver). Safe against races: a trial another process finished first is
    left as it is.

    Args:
        storage: the study store.
        trial: the trial to fail (its ``_trial_id`` and ``number`` are used).
        reason: the ``stop_reason``, e.g. ``worker_lost`` or ``interrupted``.
        stop_epoch: the last epoch the trial stored (0 if none).
        detail: the ``stop_detail`` (JSON-serialisable).
        message: the ``stop_message``, one line; None leaves it unset.

    Returns:
        True if this call failed the trial; False when it was already finished (or the write failed,
        which is logged: the next reap retries).
    """
    try:
        # Attributes first: Optuna refuses attribute writes once a trial is finished.
        write = functools.partial(storage.set_trial_user_attr, trial._trial_id)
        record_stop(write, StopDecision(reason, stop_epoch, detail, message))
        if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            return False
    except (UpdateFinishedTrialError, KeyError):
        logger.info("trial %d finished (or was reaped) by another process meanwhile", trial.number)
        return False
    except sa.exc.SQLAlchemyError:
        logger.warning("could not fail lost trial %d; the next reap retries", trial.number, exc_info=True)
        return False
    logger.warning("trial %d failed as %s: %s", trial.number, reason, detail)
    return True


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _as_utc(moment: dt.datetime | None, *, local: bool = False) -> dt.datetime:
    """``moment`` as an aware UTC datetime; naive values are UTC, or local time when ``local``."""
    if moment is None:
        return dt.datetime.now(dt.UTC)
    if moment.tzinfo is None and not local:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
