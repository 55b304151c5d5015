"""Processes of a session a test started (``start_new_session``): which live, and ending them."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


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
