"""Where the study store is: one :class:`StoreLocation` per run, parsed once from ``--storage``.

Every command turns ``--storage`` (or ``$UNET_SEARCH_STORAGE``, or the SQLite default in the working
directory) into a :class:`StoreLocation` with :meth:`StoreLocation.parse`, the only place a store URL is
parsed: a bad URL fails there with one :class:`~search.store.errors.StoreError` line, before anything is
created. The value is handed on as it is (pickled, to the Ray workers), and the engine that
``search.store.engine.open_storage`` opens from it carries it (:func:`location_of`, also in a pickled
storage's engine): the checkpoints' default folder and the claim lock read it there, so nobody parses
the URL again. :func:`redact_url` shows a string that may not even parse (a Ray address, a URL in an
error) without its password.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from search.store.errors import StoreError

# The store URL may come from the environment (e.g. a Kubernetes Secret): no password on a command line.
STORAGE_ENV = "UNET_SEARCH_STORAGE"
# The file of the default store, in the working directory.
DEFAULT_STORE_FILE = "unet-search.db"

# Backends whose DBAPI driver the project installs, for the "use e.g." part of messages.
RECOMMENDED_URLS = {
    "sqlite": "sqlite:///path.db",
    "postgresql": "postgresql+psycopg://user@host/db",
    "mysql": "mysql+pymysql://user@host/db",
}
URL_EXAMPLE = "use e.g. sqlite:///path.db or postgresql+psycopg://user@host/db"
# The execution option under which an engine of ``open_storage`` carries its StoreLocation.
LOCATION_OPTION = "unet_search_store_location"


@dataclass(frozen=True)
class StoreLocation:
    """The study store's URL, parsed and checked once (:meth:`parse`); picklable, for the Ray workers.

    ``url`` is normalised: a relative SQLite path made absolute (workers and pods in another working
    directory open the same file) and a ``mariadb://`` URL written as the ``mysql`` dialect's, which
    Optuna gives atomic upserts. ``str()`` of a location never holds the password.
    """

    url: URL

    @classmethod
    def parse(cls, given: str | None, *, directory: Path | None = None) -> StoreLocation:
        """The location ``given`` names, else the SQLite store ``unet-search.db`` in ``directory`` (cwd).

        Raises:
            StoreError: ``given`` is not a SQLAlchemy URL, names a driver that is not installed, or an
                in-memory SQLite database (which worker processes cannot share). One line, no password.
        """
        if not given:
            return cls(make_url(f"sqlite:///{(directory or Path.cwd()).resolve() / DEFAULT_STORE_FILE}"))
        shown = redact_url(given)
        try:
            parsed = make_url(given)
            parsed.get_dialect().import_dbapi()
        except (sa.exc.ArgumentError, ValueError, TypeError) as e:  # NoSuchModuleError is an ArgumentError
            raise StoreError(f"storage URL {shown!r} is not a valid SQLAlchemy URL: {URL_EXAMPLE}") from e
        except ImportError as e:
            backend = parsed.get_backend_name()
            good = RECOMMENDED_URLS.get("mysql" if backend == "mariadb" else backend, URL_EXAMPLE)
            raise StoreError(
                f"storage URL {shown!r} needs the driver {parsed.get_driver_name()!r}, which is not "
                f"installed: write the URL like {good}"
            ) from e
        if parsed.get_backend_name() == "mariadb":
            parsed = parsed.set(drivername=f"mysql+{parsed.get_driver_name()}")
        if parsed.get_backend_name() == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                raise StoreError(
                    f"storage URL {shown!r} is an in-memory SQLite database, which worker processes cannot "
                    f"share: use a file, e.g. sqlite:///runs/unet-search.db"
                )
            path = Path(str(parsed.database))
            if not path.is_absolute():
                parsed = parsed.set(database=str((directory or Path.cwd()).absolute() / path))
        return cls(parsed)

    @property
    def backend(self) -> str:
        """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB included)."""
        return self.url.get_backend_name()

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a SQLite store (absolute); None for a server store."""
        return Path(str(self.url.database)) if self.backend == "sqlite" else None

    @property
    def shown(self) -> str:
        """The URL without its password, for messages and logs."""
        return self.url.render_as_string(hide_password=True)

    def __str__(self) -> str:
        return self.shown

    def secret_url(self) -> str:
        """The URL with its password, for the database driver only (never a log line or a Tune config)."""
        return self.url.render_as_string(hide_password=False)


def location_of(engine: sa.Engine) -> StoreLocation:
    """The location ``engine`` was opened from by ``search.store.engine.open_storage`` (not parsed again).

    Raises:
        ValueError: the engine was made some other way, and so carries no location.
    """
    location = engine.get_execution_options().get(LOCATION_OPTION)
    if not isinstance(location, StoreLocation):
        raise ValueError(
            "this store engine was not opened by search.store.engine.open_storage, which records where "
            "the store is: open the store with it"
        )
    return location


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    """The ``--storage URL`` option of every command, defaulting to ``$UNET_SEARCH_STORAGE``."""
    parser.add_argument(
        "--storage",
        default=os.environ.get(STORAGE_ENV),
        help=f"SQLAlchemy URL of the study store (default: ${STORAGE_ENV}, else ./{DEFAULT_STORE_FILE})",
    )


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for messages and logs.

    A string SQLAlchemy cannot parse is masked by pattern (``scheme://user:secret@`` -> ``user:***@``),
    so that even a malformed URL is safe to quote.
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        return re.sub(r"(://[^/@:]*:)[^@]*@", r"\1***@", str(url))
