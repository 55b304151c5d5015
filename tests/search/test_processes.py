"""search.processes: a session's processes found by /proc and ended, children included."""

from __future__ import annotations

import subprocess
import sys
import time

from search.processes import end_processes, end_session, local_process_state, process_alive, session_processes

# A parent that starts a child in its session, prints the child's pid, and ignores SIGTERM (as a stuck
# Ray agent would), so only the SIGKILL after the grace period ends it.
STUBBORN = (
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(child.pid, flush=True); time.sleep(60)"
)


def _start() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def test_end_session_ends_the_leader_and_its_children() -> None:
    proc, child = _start()
    try:
        assert sorted(session_processes(proc.pid)) == sorted([proc.pid, child])
        assert sorted(end_session(proc.pid)) == sorted([proc.pid, child])
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while process_alive(child) and time.monotonic() < deadline:  # reparented: init collects it
            time.sleep(0.05)
        assert session_processes(proc.pid) == []
        assert local_process_state(child, None) == "process gone"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_end_processes_kills_what_ignores_sigterm_after_the_grace_period() -> None:
    proc, _ = _start()
    try:
        started = time.monotonic()
        end_processes(session_processes(proc.pid), grace_s=0.5)
        assert proc.wait(timeout=10) == -9
        assert time.monotonic() - started >= 0.5  # SIGTERM was ignored: SIGKILL came after the grace
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        end_session(proc.pid)
