"""Bring an existing store's tables of our own up to date: add the columns a newer version defines.

A store written by an older version keeps its rows; ``open_storage`` calls :func:`add_missing_columns`
for each of our tables, which adds every column the table definition has and the database lacks. Only
nullable columns are ever added (old rows read them as NULL, i.e. unknown), so no row is rewritten and
no default has to be invented. Two processes opening the same old store at once may both try to add a
column: the loser's "duplicate column" / "already exists" error is one of the creation races
``open_storage`` retries, and the retry finds the column there.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

logger = logging.getLogger(__name__)


def add_missing_columns(engine: sa.Engine, table: sa.Table) -> list[str]:
    """Add ``table``'s columns that the database's table lacks; return their names.

    Args:
        engine: an engine on the store (SQLite, PostgreSQL or MySQL/MariaDB).
        table: the current definition; the table itself must exist (``create_all`` made it).

    Raises:
        ValueError: a missing column is not nullable, so old rows would have no value for it.
    """
    existing = {column["name"] for column in sa.inspect(engine).get_columns(table.name)}
    missing = [column for column in table.columns if column.name not in existing]
    if not missing:
        return []
    preparer = engine.dialect.identifier_preparer
    with engine.begin() as connection:
        for column in missing:
            if not column.nullable:
                raise ValueError(
                    f"column {table.name}.{column.name} cannot be added to an existing store: it is NOT NULL"
                )
            kind = column.type.compile(dialect=engine.dialect)
            name = preparer.format_column(column)
            connection.execute(
                sa.text(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {name} {kind}")
            )
    names = [column.name for column in missing]
    logger.info("added columns %s to the store's table %s", ", ".join(names), table.name)
    return names
