"""Writing one row of our own tables by its primary key, safely while other workers write too.

Each backend's native upsert (``INSERT ... ON CONFLICT`` on SQLite and PostgreSQL, ``INSERT ... ON
DUPLICATE KEY UPDATE`` on MySQL/MariaDB) replaces the row in one statement, so writing it again is
harmless. InnoDB may still pick such a statement as the victim of a deadlock between concurrent writers
(error 1213, measured with 4 and 8 workers by ``bench/store/measure.py``), and a connection may be cut
under it: both are retried (:func:`search.store.retry.call_with_retry`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from search.store.retry import call_with_retry


def upsert_row(engine: sa.Engine, table: sa.Table, row: Mapping[str, Any], key: Sequence[str]) -> None:
    """Insert ``row`` into ``table``, or replace the row with the same ``key`` columns.

    Raises:
        StoreLostError: the server stayed unreachable for the retry window.
        sqlalchemy.exc.DBAPIError: a non-transient error, or a lock error on every attempt.
    """
    statement = _upsert(engine.dialect.name, table, row, key)

    def write() -> None:
        with engine.begin() as connection:
            connection.execute(statement)

    call_with_retry(write, engine=engine, what=f"write to {table.name}")


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
