"""Writing one row of our own tables by its primary key, safely while other workers write too.

Each backend's native upsert (``INSERT ... ON CONFLICT`` on SQLite and PostgreSQL, ``INSERT ... ON
DUPLICATE KEY UPDATE`` on MySQL/MariaDB) replaces the row in one statement. InnoDB may still pick such a
statement as the victim of a deadlock between concurrent writers (error 1213, measured with 4 and 8
workers by ``bench/store.py``), so transient lock errors are retried.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

logger = logging.getLogger(__name__)

ATTEMPTS = 6  # tries of one write before a lock error is raised
# Fragments of the driver errors that mean "another writer held a lock: try again".
TRANSIENT = ("deadlock", "lock wait timeout", "database is locked", "could not serialize")


def upsert_row(engine: sa.Engine, table: sa.Table, row: Mapping[str, Any], key: Sequence[str]) -> None:
    """Insert ``row`` into ``table``, or replace the row with the same ``key`` columns.

    Raises:
        sqlalchemy.exc.DBAPIError: a non-transient error, or a lock error on every attempt.
    """
    statement = _upsert(engine.dialect.name, table, row, key)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with engine.begin() as connection:
                connection.execute(statement)
            return
        except sa.exc.DBAPIError as e:
            if attempt == ATTEMPTS or not any(t in str(e.orig).lower() for t in TRANSIENT):
                raise
            logger.debug("write to %s met a lock (attempt %d), retrying", table.name, attempt)
            time.sleep(random.uniform(0.01, 0.05) * 2**attempt)


def _upsert(dialect: str, table: sa.Table, row: Mapping[str, Any], key: Sequence[str]) -> sa.Executable:
    updates = {name: value for name, value in row.items() if name not in key}
    if dialect in ("mysql", "mariadb"):
        return mysql.insert(table).values(**row).on_duplicate_key_update(**updates)
    if dialect == "postgresql":
        insert = postgresql.insert(table).values(**row)
        return insert.on_conflict_do_update(index_elements=list(key), set_=updates)
    if dialect == "sqlite":
        sqlite_insert = sqlite.insert(table).values(**row)
        return sqlite_insert.on_conflict_do_update(index_elements=list(key), set_=updates)
    raise ValueError(f"no upsert for database dialect {dialect!r}: use SQLite, PostgreSQL or MySQL/MariaDB")
