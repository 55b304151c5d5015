"""A pooled PostgreSQL connection left in the middle of a command (a SIGTERM that landed while it worked).

Seen in CI: a worker told to stop by SIGTERM exited 3 ("can't change 'autocommit' now: connection in
transaction status ACTIVE") instead of recording the interrupt and exiting 130. The interrupt had left a
pooled connection with its command still in flight; the next checkout's pre-ping failed on it, and the
driver's error was not one SQLAlchemy takes for a lost connection, so it reached the service.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from search.store.engine import open_storage


@pytest.mark.db
def test_a_pooled_connection_left_mid_command_is_replaced(fresh_database) -> None:
    with fresh_database("postgresql") as url:
        storage = open_storage(url)
        try:
            engine = storage.engine
            with engine.connect() as connection:
                raw = connection.connection.dbapi_connection
            assert raw is not None
            raw.pgconn.send_query(b"SELECT pg_sleep(0.2)")  # back in the pool, its command in flight
            with engine.connect() as connection:
                assert connection.execute(sa.text("SELECT 1")).scalar() == 1
            assert storage.get_all_studies() == []  # Optuna's calls go on too
        finally:
            storage.remove_session()
            storage.engine.dispose()
