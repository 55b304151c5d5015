"""Processes on this host, told apart by /proc: whether one is alive, stopped or gone, when it started,
which belong to a session or hold files in a folder, and ending them.

A pid alone does not name a process: once it ends, the pid may be given to another. The start time (from
``/proc/<pid>/stat``) tells them apart. Ending processes is one path (:func:`end_processes`: SIGTERM,
a grace period, SIGKILL for what is left), whether they are a Ray run's leftovers or a session a command
was started in. Standard library only, so that a small watchdog process
(:mod:`search.execution.ray.leftovers`) can import it without Optuna, SQLAlchemy or Ray.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

# Process start times are compared to this many seconds: /proc counts in clock ticks (1/100 s).
_START_TOLERANCE_S = 0.05


def process_start_time(pid: int) -> float | None:
    """Return when process ``pid`` started, in epoch seconds rounded to 1/100 s, or None if unknown."""
    try:
        return _start_time(_proc_stat_fields(pid))
    except (OSError, ValueError, IndexError):
        return None


def _proc_stat_fields(pid: int) -> list[str]:
    """Fields 3 onwards of ``/proc/<pid>/stat`` (state first).

    The command name (field 2) may hold spaces and parentheses, so the split starts after its last ")".
    """
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def local_process_state(pid: int, recorded_start: object) -> str:
    """Return "alive", "stopped", "process gone" or "pid reused by another process" for a pid here.

    "stopped" is a process paused by a signal (SIGSTOP, a suspended container): alive, but silent.
    """
    if not Path("/proc/self/stat").exists():  # not Linux: existence is all that can be told
        return "alive" if _pid_exists(pid) else "process gone"
    try:
        fields = _proc_stat_fields(pid)
    except OSError:
        return "process gone"
    if fields[0] in ("Z", "X"):  # exited, not yet collected by its parent
        return "process gone"
    if isinstance(recorded_start, int | float):
        started = process_start_time(pid)
        if started is not None and abs(started - recorded_start) > _START_TOLERANCE_S:
            return "pid reused by another process"
    return "stopped" if fields[0] in ("T", "t") else "alive"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _start_time(fields: list[str]) -> float:
    # starttime is field 22 (index 19 here), in clock ticks since boot.
    return round(_boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK"), 2)


@functools.cache
def _boot_time() -> int:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise ValueError("/proc/stat has no btime line")


def process_alive(pid: int) -> bool:
    """Whether ``pid`` names a live (or stopped) process here; an exited, uncollected one is gone."""
    return local_process_state(pid, None) != "process gone"


def session_processes(sid: int) -> list[int]:
    """Pids of the live processes of session ``sid`` (a process started with ``start_new_session``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _proc_stat_fields(int(entry.name))
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):  # field 6: the session id
            pids.append(int(entry.name))
    return pids


def processes_using(folder: Path) -> list[int]:
    """Pids of this user's live processes (but this one) with a file or their working dir in ``folder``."""
    inside = str(folder.resolve()) + os.sep
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid() or not process_alive(int(entry.name)):
                continue
            links = [entry / "cwd", *(entry / "fd").iterdir()]
        except OSError:  # gone meanwhile, or not ours to look into
            continue
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if (target + os.sep).startswith(inside):
                found.append(int(entry.name))
                break
    return found


def end_processes(pids: Sequence[int], *, grace_s: float) -> None:
    """End ``pids``: SIGTERM, up to ``grace_s`` seconds to exit, then SIGKILL what is left.

    With ``grace_s`` 0 they get SIGKILL at once (processes that must not outlive a test or a check).
    """
    if grace_s > 0:
        _signal_all(pids, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(process_alive(pid) for pid in pids):
            time.sleep(0.05)
    _signal_all([pid for pid in pids if process_alive(pid)], signal.SIGKILL)


def end_session(sid: int, *, grace_s: float = 0.0) -> list[int]:
    """End every live process of session ``sid`` (:func:`end_processes`); returns their pids."""
    pids = session_processes(sid)
    end_processes(pids, grace_s=grace_s)
    return pids


def _signal_all(pids: Sequence[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):  # ended meanwhile
            continue
