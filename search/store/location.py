"""Where the study store is: one URL per run, from ``--storage``, ``$UNET_SEARCH_STORAGE`` or the default.

Every command reads the URL with :func:`storage_url`, which gives the one normalised value the run opens
and hands on (a relative SQLite path made absolute, so that Ray workers and pods in another working
directory open the same file); :func:`redact_url` is how it is shown.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

# The store URL may come from the environment (e.g. a Kubernetes Secret): no password on a command line.
STORAGE_ENV = "UNET_SEARCH_STORAGE"


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    """The ``--storage URL`` option of every command, defaulting to ``$UNET_SEARCH_STORAGE``."""
    parser.add_argument(
        "--storage",
        default=os.environ.get(STORAGE_ENV),
        help=f"SQLAlchemy URL of the study store (default: ${STORAGE_ENV}, else ./unet-search.db)",
    )


def storage_url(given: str | None) -> str:
    """The URL given (option or environment), else the SQLite store in the working directory.

    A relative SQLite path is made absolute (:func:`absolute_sqlite_url`): this is the run's one URL.
    """
    return absolute_sqlite_url(given) if given else default_storage_url(Path.cwd())


def default_storage_url(directory: Path) -> str:
    """Return the SQLite URL of the store kept in ``directory`` when no storage URL is given."""
    return f"sqlite:///{Path(directory).resolve() / 'unet-search.db'}"


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for messages and logs.

    A string SQLAlchemy cannot parse is masked by pattern (``scheme://user:secret@`` -> ``user:***@``),
    so that even a malformed URL is safe to quote.
    """
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        return re.sub(r"(://[^/@:]*:)[^@]*@", r"\1***@", str(url))


def absolute_sqlite_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (workers may run in another directory).

    Other URLs, in-memory SQLite and strings SQLAlchemy cannot parse (``open_storage`` words that error)
    are returned as they are.
    """
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        return url
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    path = Path(parsed.database)
    if path.is_absolute():
        return url
    return parsed.set(database=str(path.absolute())).render_as_string(hide_password=False)
