"""Optuna's own storage test suite, run on the storages ``open_storage()`` builds, on every backend.

``optuna.testing.pytest_storages.StorageTestCase`` holds the tests; a subclass supplies a ``storage``
fixture that yields an empty storage per test. Ours is ``storage`` in conftest.py: a fresh database on
SQLite, PostgreSQL and MariaDB each. Passing it shows that what we configure (WAL, busy timeout,
pool_pre_ping, DATETIME(6) on MariaDB) keeps Optuna's storage behaving exactly as Optuna expects, so
optuna-dashboard and the Optuna API can read our databases.
"""

from __future__ import annotations

import pytest
from optuna.testing.pytest_storages import StorageTestCase

# About 40 s for the three backends (177 tests) on the 2-core dev machine.
pytestmark = pytest.mark.slow


class TestOptunaStorageSuite(StorageTestCase):
    """Every test of Optuna's suite, once per backend (the ``storage`` fixture is parametrized)."""
