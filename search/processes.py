"""Processes on this host, told apart by /proc: whether one is alive, stopped or gone, and when it started.

A pid alone does not name a process: once it ends, the pid may be given to another. The start time (from
``/proc/<pid>/stat``) tells them apart. Standard library only, so that a small watchdog process
(:mod:`search.execution.ray.leftovers`) can import it without Optuna, SQLAlchemy or Ray.
"""

from __future__ import annotations

import functools
import os
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
