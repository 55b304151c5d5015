"""Fixtures for the end-to-end runs of ``python -m search.run`` in sessions of their own."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def session_processes(sid: int) -> list[int]:
    """Pids of the live processes of session ``sid`` (a process started with start_new_session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int) -> None:
    """SIGKILL what is left of a session this test started (e.g. Ray agents a killed driver orphaned)."""
    for pid in session_processes(sid):
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator:
    """``cli(*args)``: ``python -m search.run`` in a session of its own, all of which is killed after.

    Its temporary files (Tune's folder, Ray's session) go to a folder of the test, removed afterwards:
    a killed driver cannot remove them itself. (A short path: Ray's sockets live there.)
    """
    scratch = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(scratch)}
    started = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "search.run", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_session(proc.pid)
    shutil.rmtree(scratch, ignore_errors=True)
