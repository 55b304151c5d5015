"""What a local Ray of ours leaves behind when its driver is killed, and ending it.

A local Ray (the Ray backend without ``--address``) keeps its files in a folder of ours,
``<tmp>/unet-ray-<driver pid>`` (:func:`make_ray_dir`), with the driver's identity (pid and start
time) in ``driver.json``. Every process of that Ray has files open there (its logs), which is how its
processes are found without trusting their names. When the driver is SIGKILLed, Ray's GCS and raylet die
with it and the workers with the raylet, but the agents (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``) first spend up to a minute reporting the raylet's death to the dead GCS.

Two things end them: a watchdog the driver starts (:func:`start_watchdog`), a small process that waits
for the driver's end and then ends what is left of its Ray; and, should the watchdog have been killed too,
the next local Ray run (:func:`end_dead_runs`), which does the same for every folder of ours whose driver
is dead. A folder whose driver lives (another run) is left alone, and so is any process that has no file
open in one of our folders (a ``ray start`` cluster, another user's Ray).

Standard library only: the watchdog runs this module (``python -m``) without importing Ray or torch.
Linux only (it reads ``/proc``); elsewhere nothing is found and nothing is ended.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from search.processes import end_processes, local_process_state, process_start_time, processes_using

logger = logging.getLogger(__name__)

RAY_DIR_PREFIX = "unet-ray-"  # short: Ray's sockets live in the folder (paths of at most 107 bytes)
DRIVER_FILE = "driver.json"
# How often the watchdog looks at the driver, and how long a process may take to end after SIGTERM.
_WATCH_INTERVAL_S = 0.5
_TERM_GRACE_S = 1.0


def make_ray_dir(root: Path | None = None) -> Path:
    """Create this process's Ray folder under ``root`` (default: the temporary directory) and sign it.

    A folder of the same name left by a dead run whose pid this process now has is ended and replaced.
    """
    folder = (root or Path(tempfile.gettempdir())) / f"{RAY_DIR_PREFIX}{os.getpid()}"
    if folder.exists():
        end_run(folder)
    folder.mkdir(parents=True)
    identity = {"pid": os.getpid(), "started": process_start_time(os.getpid())}
    (folder / DRIVER_FILE).write_text(json.dumps(identity))
    return folder


def driver_alive(folder: Path) -> bool:
    """Whether the driver that owns ``folder`` still runs (unknown counts as alive: nothing is ended)."""
    try:
        pid = int(folder.name.removeprefix(RAY_DIR_PREFIX))
    except ValueError:
        return True
    try:
        started = json.loads((folder / DRIVER_FILE).read_text()).get("started")
    except (OSError, ValueError, AttributeError):
        started = None  # not signed yet (a run starting now), or unreadable: judged by its pid alone
    return local_process_state(pid, started) in ("alive", "stopped")


def end_run(folder: Path) -> list[int]:
    """End every process with a file in ``folder`` (SIGTERM, then SIGKILL) and remove the folder.

    Returns:
        The pids that were ended.
    """
    pids = processes_using(folder)
    end_processes(pids, grace_s=_TERM_GRACE_S)
    shutil.rmtree(folder, ignore_errors=True)
    return pids


def end_dead_runs(root: Path | None = None) -> list[int]:
    """End what local Rays of ours left behind under ``root`` when their drivers died; see the module.

    Returns:
        The pids that were ended.
    """
    root = root or Path(tempfile.gettempdir())
    ended: list[int] = []
    for folder in sorted(root.glob(f"{RAY_DIR_PREFIX}*")):
        try:
            if not folder.is_dir() or folder.stat().st_uid != os.getuid() or driver_alive(folder):
                continue
        except OSError:
            continue
        pids = end_run(folder)
        if pids:
            logger.info("ended %d processes left by the Ray of a killed run (%s)", len(pids), folder)
        ended += pids
    return ended


def start_watchdog(folder: Path) -> subprocess.Popen[bytes]:
    """Start a process that ends what is left in ``folder`` once this process (the driver) has ended.

    It runs in a session of its own, so that a signal to the driver's process group does not reach it;
    stop it (``terminate``) when the driver shuts its Ray down itself.
    """
    package_root = str(Path(__file__).resolve().parents[3])  # the folder holding search/
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", __name__, str(folder), str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": path},
    )


def watch(folder: Path, driver_pid: int) -> None:
    """Wait until ``driver_pid`` has ended, then end what is left of its Ray in ``folder``."""
    started = process_start_time(driver_pid)
    while local_process_state(driver_pid, started) in ("alive", "stopped"):
        time.sleep(_WATCH_INTERVAL_S)
    end_run(folder)


if __name__ == "__main__":
    watch(Path(sys.argv[1]), int(sys.argv[2]))
