"""The study store: Optuna's RDBStorage on SQLite, PostgreSQL or MySQL/MariaDB, plus two tables of our own.

Optuna's tables are the source of truth: optuna-dashboard and the Optuna API read the database as it is.
Trial outcomes live in trial user attributes (``stop_reason``, ``stop_epoch``, ``stop_detail``,
``diagnosis``, ``diagnosis_summary``) and so does the worker that ran the trial (``worker_host``,
``worker_pid``, ``worker_started``).

Two tables of our own sit in the same database, created on every :func:`open_storage` (if missing;
columns a newer version added are added to an older store's table, see :mod:`search.store.migrate`):

``unet_search_epochs``: one row per trained epoch, written by :class:`search.store.epochs.EpochStore`::

    study_name     VARCHAR(512)   the Optuna study
    trial_id       INTEGER        Optuna's trial_id (unique across studies)   PRIMARY KEY (trial_id, epoch)
    trial_number   INTEGER        the trial's number within its study
    epoch          INTEGER        1-based epoch number
    train_loss, val_loss, val_dice, val_iou, learning_rate, grad_norm, grad_norm_max, seconds,
    images_per_s, train_dice, val_pred_fg, val_true_fg, grad_norm_first, grad_norm_last, input_mean,
    input_std, input_max
                   DOUBLE         NULL when the value was NaN or +-inf (MariaDB/MySQL cannot store NaN,
                                  so every backend stores NULL, to read the same everywhere); the
                                  meaning of each is in ``unet.history.EpochRecord``
    val_class_shares TEXT         JSON {"class": [predicted share, true share]} on validation
    recorded_at    DATETIME       when the row was written, naive UTC (DATETIME(6) on MySQL/MariaDB)

``unet_search_heartbeats``: one row per trial that ran under :class:`search.store.heartbeat.Heartbeat`::

    trial_id       INTEGER        PRIMARY KEY, Optuna's trial_id
    study_name     VARCHAR(512)
    host           VARCHAR(255)   host name of the worker
    pid            INTEGER        process id of the worker on that host
    beat_at        DATETIME       last sign of life, naive UTC from the worker's clock

Timestamps are DATETIME rather than TIMESTAMP because MySQL's TIMESTAMP ends in 2038 and converts to the
session time zone. Hosts' clocks must agree to well within the reaper's grace period (NTP does that).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa
from optuna.storages._rdb import models as optuna_models
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL

from search.store import sqlite
from search.store.errors import StoreError
from search.store.location import LOCATION_OPTION, StoreLocation
from search.store.migrate import add_missing_columns
from search.store.retry import OUTAGE_OPTION, OUTAGE_WINDOW_S, RetryingRDBStorage
from unet.history import EPOCH_FIELDS, TEXT_FIELDS

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Fragments of the errors that concurrent first-time table creation raises; retried, not reported.
_CREATION_RACE = ("already exists", "duplicate", "deadlock", "unique constraint", "database is locked")
_CREATION_ATTEMPTS = 5


METADATA = sa.MetaData()

# MySQL's DATETIME keeps whole seconds unless asked for microseconds.
_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

EPOCHS = sa.Table(
    "unet_search_epochs",
    METADATA,
    sa.Column("study_name", sa.String(512), nullable=False, index=True),
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("epoch", sa.Integer, primary_key=True, autoincrement=False),
    *(
        sa.Column(field, sa.Text if field in TEXT_FIELDS else sa.Double, nullable=True)
        for field in EPOCH_FIELDS
        if field != "epoch"
    ),
    sa.Column("recorded_at", _DATETIME, nullable=False),
)

HEARTBEATS = sa.Table(
    "unet_search_heartbeats",
    METADATA,
    sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("study_name", sa.String(512), nullable=False, index=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("beat_at", _DATETIME, nullable=False),
)


def open_storage(
    location: StoreLocation | str, *, read_only: bool = False, outage_window_s: float = OUTAGE_WINDOW_S
) -> optuna.storages.RDBStorage:
    """Open (and create, if new) the study store at ``location``; or open an existing one ``read_only``.

    Creates Optuna's tables and ours when missing. SQLite files are switched to WAL journal mode and
    connections wait up to a minute for a lock, so that several local worker processes can share one
    file, and the file is watched: deleted, replaced or truncated, it raises ``StoreLostError`` at the
    next use. Every backend gets ``pool_pre_ping`` so that connections dropped by the server are
    replaced. MySQL/MariaDB get Optuna's trial times with microseconds (DATETIME(6)), which Optuna's own
    test suite needs; ``mariadb://`` URLs are opened through SQLAlchemy's ``mysql`` dialect, which
    Optuna gives atomic upserts.

    Args:
        location: where the store is (:meth:`StoreLocation.parse`); a string (a script's or a test's
            URL, e.g. ``sqlite:///runs/unet-search.db``) is parsed with it here.
        read_only: only read: create nothing, and open a SQLite file read-only (it may be on read-only
            media); for reports and dashboards.
        outage_window_s: how long every store call retries a lost connection before it raises
            ``StoreLostError`` (a study's ``execution.store_outage_s``); the engine carries it
            (:func:`search.store.retry.outage_window`), also into the workers it is pickled to.

    Returns:
        The storage; ``storage.engine`` is the SQLAlchemy engine our own tables are reached through.

    Raises:
        StoreReadOnlyError: a SQLite store that is not writable, opened for writing.
        StoreError: a string URL is malformed or names an unknown or uninstalled driver, the SQLite
            directory (``read_only``: file) is missing, or the server cannot be reached, lacks the
            database or refuses the credentials.
    """
    if isinstance(location, str):
        location = StoreLocation.parse(location)
    parsed = location.url
    engine_kwargs: dict[str, Any] = {
        "pool_pre_ping": True,
        # The engine carries the location it was opened from (location_of), also into pickled copies.
        "execution_options": {OUTAGE_OPTION: outage_window_s, LOCATION_OPTION: location},
    }
    is_sqlite = parsed.get_backend_name() == "sqlite"
    opened = parsed
    if is_sqlite:
        engine_kwargs["connect_args"] = sqlite.connect_args()
        if read_only:
            opened = sqlite.read_only_url(parsed)
        else:
            sqlite.prepare_for_writing(parsed)
    # Optuna fills "{SCHEMA_VERSION}" into the URL with str.format: keep braces of a password literal.
    plain_url = opened.render_as_string(hide_password=False).replace("{", "{{").replace("}", "}}")

    def create_tables() -> None:
        engine = sa.create_engine(parsed, **engine_kwargs)
        try:
            _optuna_metadata(engine.dialect.name).create_all(engine, checkfirst=True)
            METADATA.create_all(engine, checkfirst=True)
            add_missing_columns(engine, EPOCHS)  # a store written before the evidence columns
        finally:
            engine.dispose()

    def build() -> optuna.storages.RDBStorage:
        return RetryingRDBStorage(plain_url, engine_kwargs=dict(engine_kwargs), skip_table_creation=True)

    try:
        if not read_only:
            _retry_creation_race(create_tables)
        # Optuna stamps its schema version on first open: the same race, the same cure.
        storage = _retry_creation_race(build)
    except sa.exc.SQLAlchemyError as e:
        raise StoreError(_connection_message(parsed, e)) from e
    except RuntimeError as e:
        if "optuna version" not in str(e).lower():
            raise
        raise StoreError(
            f"storage {_redacted(parsed)!r} was written by another Optuna version: "
            f"run `optuna storage upgrade --storage URL` with this URL, or install that version"
        ) from e
    if is_sqlite and not read_only:
        sqlite.watch_file(storage.engine, Path(str(parsed.database)))
    if not is_sqlite:
        sa.event.listen(storage.engine, "handle_error", _mid_command_is_a_lost_connection)
    logger.info("opened study store %s%s", _redacted(parsed), " read-only" if read_only else "")
    return storage


# Driver errors of a connection whose last command is still in flight: an interrupt (SIGTERM, Ctrl-C)
# landed while it worked, e.g. during its reset on return to the pool. Nothing more can be sent on it.
_MID_COMMAND_ERRORS = ("transaction status active", "another command is already in progress")


def _mid_command_is_a_lost_connection(context: sa.engine.ExceptionContext) -> None:
    """Take a connection left in the middle of a command for a lost one, so SQLAlchemy replaces it.

    Without this, the next checkout's pre-ping fails on it ("can't change 'autocommit' now: connection in
    transaction status ACTIVE") and the error reaches the service, as if the store had failed.
    """
    if any(fragment in str(context.original_exception).lower() for fragment in _MID_COMMAND_ERRORS):
        context.is_disconnect = True


def open_existing_storage(
    location: StoreLocation | str, *, read_only: bool = True
) -> optuna.storages.RDBStorage:
    """Open the store at ``location`` (read-only unless asked), refusing to create a new SQLite file.

    Reports, the retrain command and the dashboard only read a store that a search made: a mistyped
    SQLite path must say so instead of creating an empty database there. Read-only opening writes
    nothing, so that an archived store on read-only media can be read.

    Raises:
        StoreReadOnlyError: ``read_only`` is False and the SQLite store is not writable.
        StoreError: the SQLite file does not exist, or :func:`open_storage` fails.
    """
    if isinstance(location, str):
        location = StoreLocation.parse(location)
    path = location.sqlite_path
    if path is not None and not path.is_file():
        raise StoreError(
            f"no study store at {location.shown!r}: run python -m search.run first, "
            f"or pass --storage with the URL the search used"
        )
    return open_storage(location, read_only=read_only)


def _optuna_metadata(dialect_name: str) -> sa.MetaData:
    """Optuna's table definitions, with microsecond DATETIME(6) columns on MySQL/MariaDB."""
    if dialect_name not in ("mysql", "mariadb"):
        return optuna_models.BaseModel.metadata
    copy = sa.MetaData()
    for table in optuna_models.BaseModel.metadata.sorted_tables:
        copied = table.to_metadata(copy)
        for column in copied.columns:
            if isinstance(column.type, sa.DateTime):
                column.type = mysql.DATETIME(fsp=6)
    return copy


def _retry_creation_race(step: Callable[[], T]) -> T:
    """Run ``step``, retrying when another process was creating the same tables at the same time."""
    for attempt in range(1, _CREATION_ATTEMPTS + 1):
        try:
            return step()
        except sa.exc.DBAPIError as e:
            if attempt == _CREATION_ATTEMPTS or not any(
                fragment in str(e.orig).lower() for fragment in _CREATION_RACE
            ):
                raise
            logger.debug("table creation raced another process (attempt %d), retrying", attempt)
            time.sleep(random.uniform(0.05, 0.2) * attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _connection_message(parsed: URL, error: sa.exc.SQLAlchemyError) -> str:
    """One line naming the store, the driver's reason and the likely fix, without the password."""
    cause = _first_line(getattr(error, "orig", None) or error)
    if parsed.password:
        cause = cause.replace(str(parsed.password), "***")
    lowered = cause.lower()
    if any(s in lowered for s in ("access denied", "authentication", "role ", "password")):
        fix = "check the user name and password in the URL"
    elif "unknown database" in lowered or ("database" in lowered and "does not exist" in lowered):
        fix = f"create the database first (CREATE DATABASE {parsed.database}) or fix its name"
    elif any(s in lowered for s in ("refused", "can't connect", "resolve", "name or service", "timed out")):
        fix = "check that the server is running and that host and port are right"
    else:
        fix = "check the server, the database name and the credentials"
    return f"cannot open storage {_redacted(parsed)!r}: {cause}: {fix}"


def _redacted(parsed: URL) -> str:
    return parsed.render_as_string(hide_password=True)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__
