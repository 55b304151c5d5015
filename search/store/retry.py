"""Store calls that survive a short database outage: retried with backoff, then a clean StoreLostError.

A failover, a server restart or a pooler recycling connections cuts the connections a worker holds.
``pool_pre_ping`` replaces a dead connection when it is taken from the pool, but one cut while in use
fails its statement. Such a failure, and a lock conflict between concurrent writers (an InnoDB deadlock,
SQLite's "database is locked"), is retried here with exponential backoff: a short outage costs a retry
of the write. A server unreachable for longer than the retry window (:data:`OUTAGE_WINDOW_S` by default,
a study's ``execution.store_outage_s``, carried by the engine: :func:`outage_window`) raises
:class:`search.store.errors.StoreLostError`, which the service turns into one line and exit status 3;
the running trial stays RUNNING and is reaped and retried when the study resumes.

Every Optuna storage call goes through :class:`RetryingRDBStorage`; our own writes through
:func:`call_with_retry`. Optuna's writes are idempotent on retry except two, handled here or accepted:
a ``tell`` whose commit reached the server before its connection was cut is recognised on retry (the
trial already has the state told), and a trial created twice that way is left RUNNING without a
worker, which the reaper fails (it has no parameters, so it is not retried and does not count).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import TrialState

from search.store.errors import StoreLostError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds a store call keeps retrying a lost connection before the service gives up with exit status 3
# (the default of a study's execution.store_outage_s).
OUTAGE_WINDOW_S = 30.0
# The engine's execution option that carries its retry window (set by search.store.engine.open_storage).
OUTAGE_OPTION = "unet_search_outage_window_s"
# Tries of one write that met another writer's lock before the lock error is raised.
LOCK_ATTEMPTS = 6
_FIRST_DELAY_S, _MAX_DELAY_S = 0.05, 2.0
# Fragments of the driver errors that mean "another writer held a lock: try again".
_LOCK_ERRORS = ("deadlock", "lock wait timeout", "database is locked", "could not serialize")


def outage_window(engine: sa.Engine) -> float:
    """Seconds a call on ``engine`` retries a lost connection (:data:`OUTAGE_OPTION`, else the default)."""
    return float(engine.get_execution_options().get(OUTAGE_OPTION, OUTAGE_WINDOW_S))


def call_with_retry(
    call: Callable[[], T], *, engine: sa.Engine, what: str, before_retry: Callable[[], None] | None = None
) -> T:
    """Return ``call()``, retrying it while it fails for a lost connection or a lock conflict.

    Args:
        call: the store operation; it must be safe to run again after a failure.
        engine: the store's engine: its dialect (SQLite connections are never lost, only locked), its
            retry window (:func:`outage_window`) and its URL, named in the error.
        what: what the call does, for the log and the message.
        before_retry: called before each retry, e.g. to drop a session left broken by the failure.

    Raises:
        StoreLostError: connections kept failing for the engine's retry window.
        sqlalchemy.exc.SQLAlchemyError, StorageInternalError: any other error, or a lock on every attempt.
    """
    dialect, window = engine.dialect.name, outage_window(engine)
    deadline = time.monotonic() + window
    for attempt in range(1, 1_000_000):
        try:
            return call()
        except (StorageInternalError, sa.exc.SQLAlchemyError) as e:
            kind = _transient_kind(e, dialect)
            cause = _first_line(_cause(e))
            if kind is None or (kind == "lock" and attempt >= LOCK_ATTEMPTS):
                raise
            if kind == "connection" and time.monotonic() >= deadline:
                shown = engine.url.render_as_string(hide_password=True)
                raise StoreLostError(
                    f"the study store {shown} stayed unreachable for {window:g} s ({what}: {cause}): "
                    f"check the database server, then run the same command again to resume; the "
                    f"running trial is retried then"
                ) from e
            delay = min(_MAX_DELAY_S, _FIRST_DELAY_S * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            logger.info("%s failed (%s: %s), retry %d in %.2f s", what, kind, cause, attempt, delay)
            time.sleep(delay)
            if before_retry is not None:
                before_retry()
    raise AssertionError("unreachable: the loop returns or raises")


def _transient_kind(error: BaseException, dialect: str) -> str | None:
    """ "lock", "connection", or None for an error that a retry would not cure."""
    cause = _cause(error)
    if isinstance(cause, sa.exc.PendingRollbackError) and dialect != "sqlite":
        return "connection"  # a session whose connection was cut by an earlier statement
    if not isinstance(cause, sa.exc.DBAPIError):
        return None
    if any(fragment in str(cause.orig).lower() for fragment in _LOCK_ERRORS):
        return "lock"
    if dialect == "sqlite" or isinstance(cause, sa.exc.IntegrityError):
        return None
    if cause.connection_invalidated or isinstance(cause, sa.exc.OperationalError | sa.exc.InterfaceError):
        return "connection"
    return None


def _cause(error: BaseException) -> BaseException:
    # Optuna wraps the SQLAlchemy error of a failed commit in StorageInternalError.
    if isinstance(error, StorageInternalError) and error.__cause__ is not None:
        return error.__cause__
    return error


def _first_line(error: BaseException) -> str:
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose every call is retried through :func:`call_with_retry`.

    Before a retry the thread's session is dropped: one whose connection was cut mid-transaction
    refuses every later statement ("Can't reconnect until invalid transaction is rolled back").
    """

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        attempts = 0

        def tell() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                return optuna.storages.RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except UpdateFinishedTrialError:
                # An earlier attempt committed before its connection was cut: the state is ours.
                if attempts > 1 and optuna.storages.RDBStorage.get_trial(self, trial_id).state == state:
                    return True
                raise

        return call_with_retry(
            tell, engine=self.engine, what="set_trial_state_values", before_retry=self.remove_session
        )


def _retrying(name: str) -> Callable[..., Any]:
    method = getattr(optuna.storages.RDBStorage, name)

    @functools.wraps(method)
    def retried(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return call_with_retry(lambda: method(self, *args, **kwargs), engine=self.engine, what=name)

    return retried


for _name in (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id",
    "get_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "get_n_trials",
    "get_best_trial",
    # What Optuna's _CachedStorage (every Study's storage) calls on its backend besides the above.
    "_create_new_trial",
    "_set_trial_param",
    "_get_trials",
    "_get_best_trial_id",
):
    setattr(RetryingRDBStorage, _name, _retrying(_name))
