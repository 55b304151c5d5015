"""The reaper: fail the RUNNING trials whose worker is gone, exactly once however many workers reap.

A trial is lost when its worker ran on this host and the process is gone (or its pid now belongs to
another process, or it has been stopped, e.g. by SIGSTOP, for longer than the grace period); or, for
workers elsewhere, when its heartbeat (:mod:`search.store.heartbeat`) is older than the grace period.

Workers restarting together after a node failure all reap at the same instant. Marking a trial failed is
therefore one conditional ``UPDATE ... WHERE state = 'RUNNING'`` whose row count says which reaper won;
only the winner records why and reports the trial, so its retry is enqueued once on every backend.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models as optuna_models
from optuna.trial import FrozenTrial, TrialState

from search.outcome import StopDecision, record_stop, trial_worker
from search.processes import local_process_state
from search.store.engine import HEARTBEATS, StoreError
from search.store.epochs import EpochStore
from search.store.retry import call_with_retry
from unet.errors import ConfigError

logger = logging.getLogger(__name__)

# How long a remote (or stopped) worker may stay silent before its trial is failed as lost: the default
# of every backend and of the service.
GRACE_SECONDS = 60.0

_TRIALS = optuna_models.TrialModel.__table__
_USER_ATTRS = optuna_models.TrialUserAttributeModel.__table__


def reap_lost_trials(
    storage: optuna.storages.RDBStorage,
    study_name: str,
    *,
    grace_seconds: float = GRACE_SECONDS,
    now: dt.datetime | None = None,
) -> list[int]:
    """Fail the study's RUNNING trials whose worker is gone, with ``stop_reason="worker_lost"``.

    A worker process alive on this host is never judged by its beats (a beat delayed by a busy database
    must not fail a healthy trial), unless it is stopped (SIGSTOP, a suspended container): then, like a
    worker on another host, it is lost once its last beat, or its start if it never beat, is more than
    ``grace_seconds`` old. Lost trials get user attributes ``stop_reason``, ``stop_epoch`` (last stored
    epoch, 0 if none) and ``stop_detail`` (host, pid, cause, age of the last beat), and state FAIL.
    Several reapers may run at once and workers may finish meanwhile: each lost trial is failed by
    exactly one of them, and a trial its worker finished first is left alone.

    Args:
        storage: the study store.
        study_name: the study to check.
        grace_seconds: how long a remote (or stopped) worker may stay silent before its trial is failed.
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

    def read_beats() -> dict[int, dt.datetime]:
        with storage.engine.connect() as connection:
            return {int(trial_id): beat for trial_id, beat in connection.execute(query).all()}

    beats = call_with_retry(read_beats, engine=storage.engine, what="read heartbeats")
    epochs = EpochStore(storage.engine)
    reaped = []
    for trial in running:
        beat = beats.get(trial._trial_id)
        last_sign = _as_utc(beat) if beat is not None else _as_utc(trial.datetime_start, local=True)
        silent_s = (now - last_sign).total_seconds()
        cause = _lost_cause(trial, silent_s, beat is not None, grace_seconds)
        if cause is None:
            continue
        worker = trial_worker(trial)
        detail = {
            "host": worker.host,
            "pid": worker.pid,
            "cause": cause,
            "last_beat_age_s": round(silent_s, 1) if beat is not None else None,
        }
        stop_epoch = epochs.last_epoch(trial._trial_id)
        if fail_trial(storage, trial, reason="worker_lost", stop_epoch=stop_epoch, detail=detail):
            reaped.append(trial.number)
    return sorted(reaped)


def _lost_cause(trial: FrozenTrial, silent_s: float, has_beat: bool, grace_seconds: float) -> str | None:
    """Why the trial's worker counts as lost, or None while it may still be alive."""
    worker = trial_worker(trial)
    stopped = False
    if worker.host == socket.gethostname() and worker.pid is not None:
        state = local_process_state(worker.pid, worker.started)
        if state not in ("alive", "stopped"):
            return state
        stopped = state == "stopped"
        if not stopped:
            return None
    if silent_s > grace_seconds:
        if stopped:
            return "process stopped past the grace period"
        return "heartbeat stale" if has_beat else "no heartbeat since start"
    return None


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
    worker, an interrupted driver). The state change and the attributes are one transaction whose
    ``UPDATE`` only matches a RUNNING trial: of several processes failing the same trial at once exactly
    one succeeds, and a trial its worker finished first is left as it is.

    Args:
        storage: the study store.
        trial: the trial to fail (its ``_trial_id`` and ``number`` are used).
        reason: the ``stop_reason``, e.g. ``worker_lost`` or ``interrupted``.
        stop_epoch: the last epoch the trial stored (0 if none).
        detail: the ``stop_detail`` (JSON-serialisable).
        message: the ``stop_message``, one line; None leaves it unset.

    Returns:
        True if this call failed the trial; False when it was no longer RUNNING (or the write failed,
        which is logged: the next reap retries).
    """
    attrs: dict[str, Any] = {}
    record_stop(attrs.__setitem__, StopDecision(reason, stop_epoch, detail, message))
    trial_id = trial._trial_id
    try:
        with storage.engine.begin() as connection:
            # Optuna's own datetimes are naive local time.
            claim = (
                sa.update(_TRIALS)
                .where(_TRIALS.c.trial_id == trial_id, _TRIALS.c.state == TrialState.RUNNING)
                .values(state=TrialState.FAIL, datetime_complete=dt.datetime.now())
            )
            if connection.execute(claim).rowcount != 1:
                logger.info("trial %d finished (or was failed) by another process meanwhile", trial.number)
                return False
            connection.execute(
                sa.delete(_USER_ATTRS).where(_USER_ATTRS.c.trial_id == trial_id, _USER_ATTRS.c.key.in_(attrs))
            )
            connection.execute(
                sa.insert(_USER_ATTRS),
                [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()],
            )
    except sa.exc.SQLAlchemyError:
        logger.warning("could not fail trial %d; the next reap retries", trial.number, exc_info=True)
        return False
    logger.warning("trial %d failed as %s: %s", trial.number, reason, detail)
    return True


def _as_utc(moment: dt.datetime | None, *, local: bool = False) -> dt.datetime:
    """``moment`` as an aware UTC datetime; naive values are UTC, or local time when ``local``."""
    if moment is None:
        return dt.datetime.now(dt.UTC)
    if moment.tzinfo is None and not local:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
