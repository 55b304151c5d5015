"""SQLite files as study stores: WAL for writers, read-only opening for readers, and a watch on the file.

Writers switch the file to WAL journal mode, so that readers work while one process writes. Readers
(reports, a dashboard on an archived study) open the file read-only and never switch or create anything:
a store on read-only media stays readable. A running service watches its file: a store deleted,
replaced or truncated under it raises :class:`search.store.errors.StoreLostError` at the next use
instead of writing on into a file nobody will see again.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from search.store.errors import StoreError, StoreLostError, StoreReadOnlyError

logger = logging.getLogger(__name__)

# Seconds a SQLite connection waits for another process's write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 60


def prepare_for_writing(parsed: URL) -> None:
    """Check that the SQLite store can be written and switch it to WAL journal mode.

    WAL lets readers work while one process writes, which several local workers need; the mode is
    stored in the file, so setting it once here with a plain connection holds for every later one.

    Raises:
        StoreReadOnlyError: the file or its directory is not writable by this process.
        StoreError: the directory is missing or the file is not an SQLite database.
    """
    path = Path(str(parsed.database))
    directory = path.resolve().parent
    if not directory.is_dir():
        raise StoreError(
            f"SQLite store {str(path)!r} cannot be created: directory {str(directory)!r} "
            f"does not exist: create it (mkdir -p) or choose another path"
        )
    # WAL keeps two files beside the store (and the claim lock a third): the directory must be writable.
    unwritable = next((p for p in (path, directory) if p.exists() and not os.access(p, os.W_OK)), None)
    if unwritable is not None:
        raise StoreReadOnlyError(
            f"SQLite store {str(path)!r} is read-only ({str(unwritable)!r} is not writable by this user "
            f"or is on a read-only mount) but a run writes to it: copy it to a writable directory, or "
            f"read it with python -m search.report / python -m search.dashboard"
        )
    try:
        mode = _switch_to_wal(path)
    except sqlite3.Error as e:
        raise StoreError(
            f"SQLite store {str(path)!r} cannot be opened: {_first_line(e)}: check that it is an "
            f"SQLite file and that this user may write it and its directory"
        ) from e
    if str(mode).lower() != "wal":
        logger.warning(
            "SQLite store %s stays in journal mode %r (WAL unsupported on this file system?): "
            "parallel workers may hit 'database is locked'",
            path,
            mode,
        )


def read_only_url(parsed: URL) -> URL:
    """The URL that opens the SQLite store read-only, never writing the file or its directory.

    ``mode=ro`` reads a live store (a run may be writing it). A WAL store whose directory is read-only
    and has no ``-shm`` file cannot be opened that way; it cannot change either, so it is opened
    ``immutable``.

    Raises:
        StoreError: the file is missing or is not an SQLite database.
    """
    path = Path(str(parsed.database)).resolve()
    if not path.is_file():
        raise StoreError(
            f"no study store at {str(path)!r}: run python -m search.run first, "
            f"or pass --storage with the URL the search used"
        )
    target = f"file:{urllib.parse.quote(str(path))}"
    failure: sqlite3.Error | None = None
    for query in ({"mode": "ro"}, {"mode": "ro", "immutable": "1"}):
        try:
            _probe(f"{target}?{urllib.parse.urlencode(query)}")
        except sqlite3.OperationalError as e:  # e.g. no -shm file and no right to create one
            failure = e
            continue
        except sqlite3.DatabaseError as e:
            raise _not_a_store(path, e) from e
        return parsed.set(database=target, query={**query, "uri": "true"})
    raise _not_a_store(path, failure or sqlite3.OperationalError("unknown"))


def _probe(uri: str) -> None:
    connection = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        connection.close()


def _not_a_store(path: Path, error: BaseException) -> StoreError:
    cause = _first_line(error)
    return StoreError(f"SQLite store {str(path)!r} cannot be read: {cause}: is it an SQLite file?")


def watch_file(engine: sa.Engine, path: Path) -> None:
    """Check the store file before every use of ``engine``; raise StoreLostError once it is gone.

    A deleted file stays writable through the connections that have it open, so a run would go on
    "succeeding" into a file no one can open again: the file's identity (device and inode) is taken now
    and compared, with its size, whenever a connection is checked out of the pool (a ``stat``, a few
    microseconds). SQLite files never shrink while our services write them (nothing vacuums them).
    The file is never opened here: closing any descriptor of it would drop the process's SQLite locks.
    """
    watched = _FileWatch(path)
    sa.event.listen(engine, "checkout", lambda *_: watched.check())


class _FileWatch:
    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        stat = self.path.stat()
        self.identity = (stat.st_dev, stat.st_ino)
        self.size = stat.st_size

    def check(self) -> None:
        shown = str(self.path)
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise StoreLostError(
                f"SQLite store {shown!r} was deleted during the run: what was written since is lost; "
                f"restore the file (or start the study again) and resume"
            ) from None
        if (stat.st_dev, stat.st_ino) != self.identity:
            raise StoreLostError(
                f"SQLite store {shown!r} was replaced by another file during the run: what this run "
                f"wrote since went to the old file; check who replaced it, then resume"
            )
        if stat.st_size < self.size:
            raise StoreLostError(
                f"SQLite store {shown!r} was truncated during the run ({self.size} -> {stat.st_size} "
                f"bytes): it is damaged; restore it from a copy (or start the study again)"
            )
        self.size = stat.st_size


def _switch_to_wal(path: Path) -> str:
    """Set WAL journal mode on the SQLite file at ``path``; return the mode the file ends up in.

    Switching needs the file to itself and SQLite answers "database is locked" at once, without
    waiting, while another process switches or opens it: so retry until the busy timeout is spent.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            mode = str(connection.execute("PRAGMA journal_mode").fetchone()[0])
            if mode.lower() != "wal":
                mode = str(connection.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            return mode
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
        finally:
            connection.close()
        time.sleep(random.uniform(0.02, 0.1))


def connect_args() -> dict[str, Any]:
    """The DBAPI connect arguments of a SQLite store: wait for other writers' locks."""
    return {"timeout": SQLITE_BUSY_TIMEOUT_S}


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__
