"""The bad ``--out`` destinations every output command refuses (search.export, unet.predict, search.retrain).

Shared by their tests: each command must give one line and exit 2 before it writes anything.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

# (case, a part of the one-line error), the cases every output command shares.
BAD_DESTINATIONS = [
    ("a-file", "is a file: give a folder"),
    ("under-a-file", "a file: choose a path under a folder"),
    ("read-only", "cannot be written (Read-only file system): choose a folder you can write to"),
    ("full", "cannot be written (No space left on device): free some space"),
]
FOREIGN_FILES = ("foreign-files", "holds 1 file(s) this command does not write (notes.txt)")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (hidden leftovers included)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def bad_destination(place: Path, case: str, fail_writes_under: Callable[[Path, int], None]) -> Path:
    """Make ``case`` (of :data:`BAD_DESTINATIONS` or :data:`FOREIGN_FILES`) in ``place``; the ``--out``."""
    out = place / "out"
    if case == "a-file":
        out.write_text("keep me")
    elif case == "under-a-file":
        (place / "file").write_text("keep me")
        out = place / "file" / "out"
    elif case == "foreign-files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case in ("read-only", "full"):
        fail_writes_under(place, errno.EROFS if case == "read-only" else errno.ENOSPC)
    else:
        raise ValueError(f"no such bad destination: {case}")
    return out
