"""The pods' init container: wait until the study store accepts connections (``python -m search.k8s
wait-store``), so that workers applied together with the database do not fail while it starts."""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from search.store.engine import StoreError
from search.store.location import redact_url
from unet.errors import ConfigError

logger = logging.getLogger(__name__)


def wait_for_store(url: str, *, timeout: float, interval: float = 2.0) -> int:
    """Return once the store at ``url`` accepts a connection; the number of attempts it took.

    Raises:
        ConfigError: ``url`` is not a usable SQLAlchemy URL.
        StoreError: the store stayed unreachable for ``timeout`` seconds. No message holds the password.
    """
    shown = redact_url(url)
    try:
        parsed = sa.make_url(url)
        connect_args = {"connect_timeout": 5} if parsed.get_backend_name() in ("postgresql", "mysql") else {}
        engine = sa.create_engine(parsed, connect_args=connect_args, poolclass=sa.pool.NullPool)
    except (sa.exc.ArgumentError, ValueError, ImportError) as e:
        raise ConfigError(
            f"storage URL {shown!r} is not a usable SQLAlchemy URL: write it like "
            f"postgresql+psycopg://user:password@host:5432/db"
        ) from e
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
