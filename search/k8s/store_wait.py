"""The pods' init container: wait until the study store accepts connections (``python -m search.k8s
wait-store``), so that workers applied together with the database do not fail while it starts."""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from search.store.errors import StoreError
from search.store.location import StoreLocation

logger = logging.getLogger(__name__)


def wait_for_store(location: StoreLocation, *, timeout: float, interval: float = 2.0) -> int:
    """Return once the store at ``location`` accepts a connection; the number of attempts it took.

    Raises:
        StoreError: the store stayed unreachable for ``timeout`` seconds. No message holds the password.
    """
    shown, parsed = location.shown, location.url
    connect_args = {"connect_timeout": 5} if location.backend in ("postgresql", "mysql") else {}
    engine = sa.create_engine(parsed, connect_args=connect_args, poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + timeout
    attempts = 0
    try:
        while True:
            attempts += 1
            try:
                with engine.connect() as connection:
                    connection.execute(sa.text("SELECT 1"))
                return attempts
            except sa.exc.DBAPIError as e:
                reason = str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else type(e.orig).__name__
                if parsed.password:
                    reason = reason.replace(str(parsed.password), "***")
                if time.monotonic() + interval > deadline:
                    raise StoreError(
                        f"store {shown!r} still unreachable after {timeout:g} s ({reason}): check that the "
                        f"database runs and that the URL in the Secret is right"
                    ) from e
                logger.warning("store %s not reachable yet (%s); retrying in %g s", shown, reason, interval)
                time.sleep(interval)
    finally:
        engine.dispose()
