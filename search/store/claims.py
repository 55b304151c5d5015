"""A study-wide lock under which a worker counts the trials and claims the next one.

Without it, two workers that both see "one trial left" would both start one, and a study would end with
more trials than asked for. The lock is the database's own where it has one (PostgreSQL advisory locks,
MySQL/MariaDB ``GET_LOCK``) and a lock file beside a SQLite database (whose workers share one machine).
It is held only for the count and the ``ask``, never during training.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

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

    Raises:
        TimeoutError: a MySQL/MariaDB lock could not be had within ``MYSQL_LOCK_TIMEOUT_S``.
    """
    dialect = engine.dialect.name
    if dialect == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            yield  # one process, one connection: nothing to race with
            return
        with open(Path(database).with_name(Path(database).name + ".lock"), "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    elif dialect == "postgresql":
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _lock_key(study_name)})
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _lock_key(study_name)})
                connection.commit()
    elif dialect in ("mysql", "mariadb"):
        name = f"unet-search:{study_name}"[:64]
        with engine.connect() as connection:
            got = connection.execute(
                sa.text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": MYSQL_LOCK_TIMEOUT_S}
            ).scalar()
            if got != 1:
                raise TimeoutError(f"could not lock study {study_name!r} within {MYSQL_LOCK_TIMEOUT_S} s")
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
                connection.commit()
    else:
        yield
