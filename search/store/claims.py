"""A study-wide lock under which a worker counts the trials and claims the next one.

Without it, two workers that both see "one trial left" would both start one, and a study would end with
more trials than asked for. The lock is the database's own where it has one (PostgreSQL advisory locks,
MySQL/MariaDB ``GET_LOCK``) and a lock file beside a SQLite database (whose workers share one machine).
It is held only for the count and the ``ask``, never during training.

A server lock lives as long as the connection that took it: taking it is retried like any store call
when the connection is cut (:mod:`search.store.retry`), and a connection cut while the lock is held
has already released it, so the release is skipped then.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
from collections.abc import Iterator, Mapping

import sqlalchemy as sa

from search.store.location import location_of
from search.store.retry import call_with_retry

logger = logging.getLogger(__name__)

# Seconds a MySQL/MariaDB worker waits for the lock before giving up with an error.
MYSQL_LOCK_TIMEOUT_S = 120


def _lock_key(study_name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks."""
    return int.from_bytes(
        hashlib.sha256(f"unet-search:{study_name}".encode()).digest()[:8], "big", signed=True
    )


@contextlib.contextmanager
def claim_lock(engine: sa.Engine, study_name: str) -> Iterator[None]:
    """Hold the study's claim lock for the duration of the block.

    ``engine`` is one ``search.store.engine.open_storage`` opened: a SQLite lock file lies beside the
    database file of the location it carries.

    Raises:
        ValueError: a SQLite engine opened some other way (it carries no location).
        TimeoutError: a MySQL/MariaDB lock could not be had within ``MYSQL_LOCK_TIMEOUT_S``.
    """
    dialect = engine.dialect.name
    if dialect == "sqlite":
        database = location_of(engine).sqlite_path
        assert database is not None  # a SQLite location has a file (StoreLocation refuses :memory:)
        with open(database.with_name(database.name + ".lock"), "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    elif dialect == "postgresql":
        key = {"key": _lock_key(study_name)}
        with _locked(engine, "SELECT pg_advisory_lock(:key)", key, "SELECT pg_advisory_unlock(:key)"):
            yield
    elif dialect in ("mysql", "mariadb"):
        name = {"name": f"unet-search:{study_name}"[:64], "timeout": MYSQL_LOCK_TIMEOUT_S}
        with _locked(engine, "SELECT GET_LOCK(:name, :timeout)", name, "SELECT RELEASE_LOCK(:name)") as got:
            if got != 1:
                raise TimeoutError(f"could not lock study {study_name!r} within {MYSQL_LOCK_TIMEOUT_S} s")
            yield
    else:
        yield


@contextlib.contextmanager
def _locked(engine: sa.Engine, lock: str, params: Mapping[str, object], unlock: str) -> Iterator[object]:
    """Take a server lock on a connection of its own (retried), yield its result, release it."""

    def take() -> tuple[sa.Connection, object]:
        connection = engine.connect()
        try:
            return connection, connection.execute(sa.text(lock), params).scalar()
        except BaseException:
            connection.close()
            raise

    connection, result = call_with_retry(take, engine=engine, what="take the claim lock")
    try:
        yield result
    finally:
        try:
            connection.execute(sa.text(unlock), params)  # harmless when the lock was not had
            connection.commit()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
            # The connection was cut while the lock was held: the server released it with the session.
            logger.info("claim lock's connection was lost (%s); the server released the lock", e.orig)
        finally:
            connection.close()
