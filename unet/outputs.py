"""Output folders written whole: checked before anything is written, staged beside, renamed into place.

Every command that writes a folder (``unet.predict``, ``search.export``, ``search.retrain``) does three
things, so that a bad argument or a full disk never leaves half an output or touches an input:

1. ``check_out`` before it writes anything: ``--out`` is a folder or a new path (not a file, not under a
   file), it is not an input folder and neither holds the other, an existing one holds only what the
   command itself writes (it is replaced whole), and its parent takes a file (a real write, so a
   read-only mount, a missing permission or a full disk are found even by root).
2. ``staged``: the outputs go into a hidden temporary sibling ``.<name>.tmp-*`` (same filesystem).
3. On success the sibling replaces ``--out`` by renames only (which need no space): the old folder is
   moved aside, the new one moved in, the old one removed. A failure removes the sibling and leaves the
   old ``--out`` as it was.

Files and folders are made with the modes the umask gives (``file_mode``, ``folder_mode``), like any
other program's, not the private 0600/0700 of ``tempfile``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from unet.errors import OutputError

PROBE_BYTES = 4096  # written by the probe: enough for a full disk to refuse it


def umask() -> int:
    """The process's umask, read without changing it where Linux says it (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: read by setting it, and put it back at once
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from ``open()`` under the current umask (0644 under umask 022)."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The mode a new folder gets from ``mkdir`` under the current umask (0755 under umask 022)."""
    return 0o777 & ~umask()


def check_out(
    out: Path,
    *,
    owned: Callable[[Path], bool],
    inputs: Mapping[str, Path] | None = None,
    option: str = "--out",
) -> None:
    """Check that ``out`` can take the command's outputs, writing nothing there.

    Args:
        out: the output folder (existing or not).
        owned: whether an entry of an existing ``out`` is one the command writes (it is replaced with
            the folder); anything else there is refused rather than removed.
        inputs: the command's input folders by option (``{"--images": path}``).
        option: the output's option, for the messages.

    Raises:
        OutputError: one line naming the problem and the fix.
    """
    target = out.resolve()
    if target.exists() and not target.is_dir():
        raise OutputError(f"{option} {out} is a file: give a folder (new or existing) for the outputs")
    for name, folder in (inputs or {}).items():
        source = folder.resolve()
        if target == source or target.is_relative_to(source):
            raise OutputError(
                f"{option} {out} is inside {name} {folder}: the outputs would overwrite the inputs; "
                f"choose a folder outside {folder}"
            )
        if source.is_relative_to(target):
            raise OutputError(
                f"{name} {folder} is inside {option} {out}, which is replaced by the outputs: "
                f"choose a folder that does not hold the inputs"
            )
    if target.is_dir():
        foreign = sorted(p.name for p in target.iterdir() if not owned(p))
        if foreign:
            raise OutputError(
                f"{option} {out} holds {len(foreign)} file(s) this command does not write "
                f"({', '.join(foreign[:3])}): the folder is replaced whole, so choose a new or empty folder"
            )
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{option} {out} is under {parent}, a file: choose a path under a folder")
    probe(parent, what=f"{option} {out}")


def probe(folder: Path, *, what: str) -> None:
    """Write and remove a small file in ``folder``: read-only, no permission and a full disk all fail.

    Raises:
        OutputError: the write failed; the message says why.
    """
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".probe-")
    except OSError as e:
        raise OutputError(f"{what}: {folder} cannot be written ({_reason(e)}): {_fix(e)}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(f"{what}: {folder} cannot be written ({_reason(e)}): {_fix(e)}") from e
    finally:
        Path(name).unlink(missing_ok=True)


def write_failed(out: Path, error: OSError, *, option: str = "--out") -> str:
    """The one line for a write that failed part way (the old ``out`` is left as it was)."""
    return f"{option} {out} was not written ({_reason(error)}; it is left as it was): {_fix(error)}"


class StagedFolder:
    """A temporary sibling of ``out`` that becomes ``out`` on ``commit`` (see the module docstring)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        self.path.chmod(folder_mode())
        self.done = False

    def commit(self) -> None:
        """Put the staged folder in place of ``out`` (renames only: no space is needed)."""
        old = None
        if self.out.exists():
            old = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}.old-"))
            os.replace(self.out, old)
        try:
            os.replace(self.path, self.out)
        except BaseException:
            if old is not None:
                os.replace(old, self.out)
            raise
        self.done = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Remove the staged folder; ``out`` stays as it was."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.done = True


@contextlib.contextmanager
def staged(out: Path) -> Iterator[StagedFolder]:
    """A ``StagedFolder`` for ``out``: committed when the block ends, discarded when it raises.

    The block may commit or discard it itself (e.g. to keep an interrupted run's finished epochs).
    """
    folder = StagedFolder(out)
    try:
        yield folder
    except BaseException:
        if not folder.done:
            folder.discard()
        raise
    if not folder.done:
        folder.commit()


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _fix(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "free some space or choose a folder on another disk"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "choose a folder you can write to"
    return "check the folder, or choose another"
