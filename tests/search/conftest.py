"""Fixtures for the store tests: an empty database per test on SQLite, PostgreSQL and MariaDB.

The servers are real (CI runs them too). Each test session creates a database of its own on each server,
with a random name, empties it before every test and drops it at the end, so several test runs can share
the servers. (A new database per test made the run twice as long.) SQLite gets
a new file per test. An unreachable server fails the test with the reason, never skips it.
``UNET_SEARCH_TEST_POSTGRES_URL`` / ``UNET_SEARCH_TEST_MARIADB_URL`` point the tests at other servers;
the URL's database is only used to connect for CREATE/DROP DATABASE.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from search.store.engine import open_storage
from search.store.location import redact_url

SERVER_URLS = {
    "postgresql": os.environ.get(
        "UNET_SEARCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("UNET_SEARCH_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
SERVER_ENV = {"postgresql": "UNET_SEARCH_TEST_POSTGRES_URL", "mariadb": "UNET_SEARCH_TEST_MARIADB_URL"}
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.db),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.db),
]
DATABASE_PREFIX = "unet_search_test_"
# Tables whose rows say which schema version the database has: kept when emptying it.
_SCHEMA_TABLES = {"version_info", "alembic_version"}

_admin_engines: dict[str, sa.Engine] = {}
_session_databases: dict[str, str] = {}  # backend -> URL of this session's database


def admin_engine(backend: str) -> sa.Engine:
    """An AUTOCOMMIT engine on the test server of ``backend``; fails the test if it is unreachable."""
    if backend not in _admin_engines:
        engine = sa.create_engine(SERVER_URLS[backend], isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        try:
            with engine.connect():
                reason = None
        except sa.exc.DBAPIError as e:
            engine.dispose()
            reason = str(e.orig).strip().splitlines()[0]
        if reason is not None:
            pytest.fail(
                f"{backend} test server {redact_url(SERVER_URLS[backend])} is unreachable ({reason}): "
                f"start it, or set {SERVER_ENV[backend]} to a running one",
                pytrace=False,
            )
        _admin_engines[backend] = engine
    return _admin_engines[backend]


def _server_url(backend: str, database: str | None = None) -> str:
    """The test server's URL, with another database name if one is given."""
    url = sa.make_url(SERVER_URLS[backend])
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def _create_database(backend: str) -> str:
    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex[:12]}"
    with admin_engine(backend).connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    return name


def _drop_database(backend: str, name: str) -> None:
    # FORCE ends connections a test left open (a killed worker's, a pickled storage's).
    drop = f"DROP DATABASE IF EXISTS {name}" + (" WITH (FORCE)" if backend == "postgresql" else "")
    with admin_engine(backend).connect() as connection:
        connection.execute(sa.text(drop))


def _emptied(url: str) -> str:
    """Delete every row but the schema version from the database at ``url``; return ``url``."""
    engine = sa.create_engine(url)
    try:
        tables = sa.MetaData()
        tables.reflect(engine)
        with engine.begin() as connection:
            for table in reversed(tables.sorted_tables):  # children before the rows they reference
                if table.name not in _SCHEMA_TABLES:
                    connection.execute(table.delete())
    finally:
        engine.dispose()
    return url


@contextmanager
def _fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a new database without tables, dropped (or left in tmp_path) afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / f'{DATABASE_PREFIX}{uuid.uuid4().hex[:8]}.db'}"
        return
    name = _create_database(backend)
    try:
        yield _server_url(backend, name)
    finally:
        _drop_database(backend, name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test: sqlite, postgresql or mariadb."""
    return request.param


@pytest.fixture
def storage_url(backend: str, tmp_path: Path) -> str:
    """The URL of an empty database on the backend under test (Optuna's tables may exist, without rows)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if backend not in _session_databases:
        _session_databases[backend] = _server_url(backend, _create_database(backend))
    return _emptied(_session_databases[backend])


@pytest.fixture
def server_url() -> Callable[..., str]:
    """``server_url(backend, database=None)``: the URL of a test server, e.g. with a missing database."""
    return _server_url


@pytest.fixture
def server_admin() -> Callable[[str], sa.Engine]:
    """``server_admin(backend)``: an AUTOCOMMIT engine on that test server (users, databases, sessions)."""
    return admin_engine


@pytest.fixture
def fresh_database(tmp_path: Path) -> Callable[[str], AbstractContextManager[str]]:
    """``with fresh_database(backend) as url:`` a new database without any table."""
    return lambda backend: _fresh_database(backend, tmp_path)


@pytest.fixture
def storage(storage_url: str) -> Iterator[optuna.storages.RDBStorage]:
    """The store ``open_storage()`` opens on an empty database; also what Optuna's suite runs on."""
    opened = open_storage(storage_url)
    try:
        yield opened
    finally:
        opened.remove_session()
        opened.engine.dispose()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for backend, url in _session_databases.items():
        _drop_database(backend, str(sa.make_url(url).database))
    _session_databases.clear()
    for engine in _admin_engines.values():
        engine.dispose()
    _admin_engines.clear()
