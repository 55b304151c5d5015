"""A SIGKILLed Ray driver: what its local Ray leaves behind is ended, and the same command resumes.

Found by hand: after ``python -m search.run --backend ray`` had its driver SIGKILLed, Ray's agents
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) stayed alive through the rerun, and a raylet
"worker died" line reached the terminal.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState
from test_run import REPO, epochs_recorded, study_file, trials, wait_for

from search.execution.ray import leftovers
from search.processes import process_start_time, session_processes
from search.spec.schema import STUDIES_DIR

SMOKE_DATA = yaml.safe_load((STUDIES_DIR / "unet-smoke.yaml").read_text())["data"]["synthetic"]
# No plateau stop within the trial's epochs.
LONG = {"plateau": {"warmup_epochs": 1000, "patience": 1, "min_delta": 0.0, "divergence_factor": 5.0}}


def epochs_of(db: Path, trial_number: int) -> int:
    with sqlite3.connect(db, timeout=5) as con:
        query = "SELECT count(*) FROM unet_search_epochs WHERE trial_number = ?"
        return con.execute(query, (trial_number,)).fetchone()[0]


def worker_pid(db: Path) -> int | None:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            query = "SELECT value_json FROM trial_user_attributes WHERE key = 'worker_pid'"
            row = con.execute(query).fetchone()
    except sqlite3.OperationalError:  # the schema is not there yet
        return None
    return None if row is None else int(json.loads(row[0]))


def stop_worker_after_epochs(db: Path, epochs: int, *, driver: int) -> None:
    """SIGSTOP the trial's Ray worker as soon as ``epochs`` epochs are recorded (polled every 10 ms)."""
    wait_for(lambda: epochs_recorded(db) >= epochs, timeout=300, interval=0.01, what=f"{epochs} epochs")
    pid = worker_pid(db)  # the worker's, recorded as it started the trial (the driver's before that)
    assert pid is not None and pid != driver, pid
    os.kill(pid, signal.SIGSTOP)  # ended only by the leftovers' cleanup


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


@pytest.mark.slow
def test_killed_driver_leaves_no_ray_process_and_is_resumed_by_the_same_command(tmp_path, cli):
    path = study_file(
        tmp_path,
        "killed-driver",
        # The killed run's worker lives a few seconds past its driver (with 60 epochs it once finished the
        # trial, under load): it is stopped before the driver is killed, so it cannot, whatever the length.
        # It must not finish before it is stopped either: an epoch of the smoke study's 16 images of 32 px
        # takes 25 ms (a loaded full suite once saw all 30 recorded before the stop); these take ~0.25 s.
        budget={"n_trials": 1, "max_epochs": 20},
        data={"source": "synthetic", "synthetic": {**SMOKE_DATA, "size": 64, "n_train": 96}},
        pruning=LONG,
        execution={"max_retries": 1},
    )
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    command = ("--study", str(path), "--storage", url, "--backend", "ray")
    first = cli(*command)
    # The worker is stopped the moment its second epoch is in the store (read through Optuna, the trial
    # had once finished before the stop).
    stop_worker_after_epochs(db, 2, driver=first.pid)
    assert len(session_processes(first.pid)) > 3  # the driver, Ray's GCS, raylet, agents and worker
    assert [t.state for t in trials(url, "killed-driver")] == [TrialState.RUNNING]
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert [t.state for t in trials(url, "killed-driver")] == [TrialState.RUNNING]

    second = cli(*command)
    # Once the rerun trains, nothing of the dead run's Ray is left (whatever outlived the driver).
    wait_for(lambda: epochs_of(db, 1) >= 1 or second.poll() is not None, timeout=300, what="the retry")
    left = {pid: command_line(pid) for pid in session_processes(first.pid)}
    assert left == {}, f"processes of the killed run still alive during the rerun: {left}"
    out, _ = second.communicate(timeout=600)

    assert second.returncode == 0, out
    assert "Traceback" not in out and "worker died" not in out.lower() and "raylet" not in out, out
    assert session_processes(first.pid) == []
    # The dead run's folder went with its processes; the rerun's (Ray's logs) stays until the next run.
    folders = [p.name for p in cli.tmpdir.glob(f"{leftovers.RAY_DIR_PREFIX}*")]
    assert folders == [f"{leftovers.RAY_DIR_PREFIX}{second.pid}"]
    done = trials(url, "killed-driver")
    assert [t.state for t in done] == [TrialState.FAIL, TrialState.COMPLETE]  # nothing RUNNING, 1 counted
    lost, retry = done
    assert lost.user_attrs["stop_reason"] == "worker_lost" and lost.user_attrs["stop_epoch"] >= 2
    assert retry.user_attrs["retry_of"] == 0 and retry.params == lost.params  # retried once


# --- finding and ending what a dead run left, by hand -------------------------------------------------


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """``spawn(log=PATH)``: a sleeping process, its output in ``log`` (a file it keeps open); killed after."""
    started: list[subprocess.Popen] = []

    def start(*, log: Path | None = None) -> subprocess.Popen:
        out = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen(["sleep", "120"], stdout=out)
        if log is not None:
            out.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def ray_dir(root: Path, driver_pid: int, started: float | None) -> Path:
    """A folder as a driver makes it (``make_ray_dir``), with a Ray log file inside."""
    folder = root / f"{leftovers.RAY_DIR_PREFIX}{driver_pid}"
    (folder / "session_1" / "logs").mkdir(parents=True)
    (folder / leftovers.DRIVER_FILE).write_text(json.dumps({"pid": driver_pid, "started": started}))
    return folder


def alive(proc: subprocess.Popen) -> bool:
    return proc.poll() is None


def test_only_the_leftovers_of_dead_drivers_are_ended(tmp_path, spawn):
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = ray_dir(tmp_path, finished.pid, 1.0)
    leftover = spawn(log=dead / "session_1" / "logs" / "raylet.out")  # e.g. a ray::DashboardAgent
    live_driver = spawn()
    live = ray_dir(tmp_path, live_driver.pid, process_start_time(live_driver.pid))
    other_run = spawn(log=live / "session_1" / "logs" / "raylet.out")  # another run's, still in use
    reused_pid = ray_dir(tmp_path / "elsewhere", live_driver.pid, 1.0)  # the pid now names another process
    orphan = spawn(log=reused_pid / "session_1" / "logs" / "worker.out")
    (tmp_path / "ray").mkdir()
    outsider = spawn(log=tmp_path / "ray" / "raylet.out")  # a `ray start` cluster's: not ours

    assert leftovers.end_dead_runs(tmp_path) == [leftover.pid]
    wait_for(lambda: not alive(leftover), timeout=10, what="the leftover to end")
    assert alive(live_driver) and alive(other_run) and alive(outsider)
    assert not dead.exists() and live.exists()
    assert leftovers.end_dead_runs(tmp_path / "elsewhere") == [orphan.pid]
    wait_for(lambda: not alive(orphan), timeout=10, what="the orphan to end")


def test_the_watchdog_ends_the_leftovers_when_the_driver_dies(tmp_path, spawn):
    driver = spawn()
    folder = ray_dir(tmp_path, driver.pid, process_start_time(driver.pid))
    leftover = spawn(log=folder / "session_1" / "logs" / "dashboard_agent.log")
    watchdog = subprocess.Popen(
        [sys.executable, "-m", leftovers.__name__, str(folder), str(driver.pid)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        time.sleep(1.0)
        assert alive(leftover) and watchdog.poll() is None  # the driver lives: nothing is ended
        driver.kill()
        driver.wait()
        assert watchdog.wait(timeout=30) == 0
        assert leftover.wait(timeout=5) == -signal.SIGTERM
        assert not folder.exists()
    finally:
        watchdog.kill()
