"""Fixtures for the end-to-end runs of ``python -m search.run`` in sessions of their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from search.processes import end_session

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def cli(tmp_path: Path) -> Iterator:
    """``cli(*args)``: ``python -m search.run`` in a session of its own, all of which is killed after.

    Its temporary files (Tune's folder, Ray's session) go to a folder of the test (``cli.tmpdir``),
    removed afterwards. (A short path: Ray's sockets live there.)
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

    start.tmpdir = scratch  # type: ignore[attr-defined]
    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        end_session(proc.pid)
    shutil.rmtree(scratch, ignore_errors=True)
