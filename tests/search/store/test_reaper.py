"""The reaper under concurrency: workers that start together must reap and retry a lost trial once."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.store.reaper import reap_lost_trials

REPO_ROOT = Path(__file__).resolve().parents[3]
ROUNDS = 3  # as found: the race showed in 3 of 3 rounds

# A worker's first step, as run_local and run_ray take it: reap the study's lost trials and enqueue a
# retry of each one this worker reaped. It reaps on every "go" line on stdin, so that all workers start
# at the same instant, round after round.
REAPER = """
import sys, optuna
from search.execution.study import enqueue_retry
from search.store.engine import open_storage
from search.store.reaper import reap_lost_trials
url, name = sys.argv[1:3]
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = open_storage(url)
study = optuna.load_study(study_name=name, storage=storage)
print("ready", flush=True)
while sys.stdin.readline().strip() == "go":
    reaped = reap_lost_trials(storage, name)
    for number in reaped:
        enqueue_retry(study, study.get_trials(deepcopy=False)[number], max_retries=3)
    print(" ".join(map(str, reaped)) or "-", flush=True)
"""


def dead_pid() -> int:
    """The pid of a process that has exited (and been collected)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.slow
def test_workers_started_together_reap_and_retry_a_lost_trial_once(
    storage: optuna.storages.RDBStorage, storage_url: str
) -> None:
    study = optuna.create_study(storage=storage, study_name="restart")
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", REAPER, storage_url, "restart"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        for worker in workers:
            assert read_line(worker) == "ready", worker.stderr
        for _ in range(ROUNDS):
            lost = lost_trial(study)
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
            reapers = [line for line in (read_line(worker) for worker in workers) if line != "-"]
            assert reapers == [str(lost.number)]  # exactly one worker reaped it
            trials = study.get_trials(deepcopy=False)
            assert [t.state for t in trials[-2:]] == [TrialState.FAIL, TrialState.WAITING]  # one retry
            assert trials[-2].user_attrs["stop_reason"] == "worker_lost"
            assert trials[-1].user_attrs == {"retry_of": lost.number, "retry": 1}
            study.tell(study.ask(), 1.0)  # the retry runs
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.close()
            assert worker.wait(timeout=120) == 0, worker.stderr
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 2 * ROUNDS
    assert sum(t.state == TrialState.COMPLETE for t in trials) == ROUNDS
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert reap_lost_trials(storage, "restart") == []


def lost_trial(study: optuna.Study) -> optuna.Trial:
    """A RUNNING trial whose worker, on this host, has exited."""
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    for key, value in {"host": socket.gethostname(), "pid": dead_pid(), "started": None}.items():
        trial.set_user_attr(f"worker_{key}", value)
    return trial


def read_line(worker: subprocess.Popen[str]) -> str:
    assert worker.stdout is not None
    ready, _, _ = select.select([worker.stdout], [], [], 120)  # a bound against a hung worker
    return worker.stdout.readline().strip() if ready else "(no answer)"
