"""Store under load: many local workers start together on one study with a budget and some lost trials.

Clusters start many workers at once (the pods of an Indexed Job, a node pool coming back). Each worker
process here runs the service's store traffic exactly as ``search.execution.local.run_local`` does it,
without the training: reap lost trials and enqueue their retries, claim under the study's claim lock
(count, ask) until the budget is full, then per trial a heartbeat, epoch rows with reports, attributes
and ``tell``. The study starts with ``lost`` RUNNING trials whose worker process is gone, so every worker
reaps at the same instant. Afterwards the study is checked: exactly ``n_trials`` counted trials, no
duplicate trial numbers, every lost trial failed once as ``worker_lost`` and retried once, no trial left
RUNNING or WAITING, every epoch row there, and no exception in any worker. Measured: counted trials per
second (from the common start to the last worker's end) and the p50/p95 of one trial's store time.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import time
import traceback
import uuid
from collections import Counter
from typing import Any

import optuna
from optuna.trial import TrialState

from bench.store.bulk import epoch_record
from bench.store.workers import WAIT_S, end_workers_and_drop, start_workers, worker_study
from search.execution.study import count_trials, enqueue_retry
from search.outcome import DIAGNOSIS, WorkerIdentity, record_worker, retry_of, stop_reason
from search.store.claims import claim_lock
from search.store.engine import open_storage
from search.store.epochs import EpochStore
from search.store.heartbeat import Heartbeat
from search.store.location import StoreLocation
from search.store.reaper import reap_lost_trials

STUDY_PREFIX = "bench-load-"
MAX_RETRIES = 1


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _add_lost_trials(study: optuna.Study, lost: int) -> list[int]:
    """``lost`` RUNNING trials with parameters, whose worker (on this host) has exited."""
    numbers = []
    for _ in range(lost):
        trial = study.ask()
        trial.suggest_float("learning_rate", 1e-5, 1e-1, log=True)
        record_worker(
            trial.set_user_attr, WorkerIdentity(host=socket.gethostname(), pid=_dead_pid(), started=None)
        )
        numbers.append(trial.number)
    return numbers


def _claim(study: optuna.Study, storage: optuna.storages.RDBStorage, n_trials: int) -> optuna.Trial | None:
    with claim_lock(storage.engine, study.study_name):
        counts = count_trials(study)
        if counts.finished + counts.running >= n_trials:
            return None
        study.sampler = optuna.samplers.RandomSampler()
        return study.ask()


def _worker(
    location: StoreLocation, name: str, n_trials: int, epochs: int, barrier: Any, results: Any
) -> None:
    errors: list[str] = []
    seconds: list[float] = []
    with worker_study(location, name) as (storage, study):
        store = EpochStore(storage.engine)
        barrier.wait()
        while True:
            begun = time.perf_counter()
            try:
                for number in reap_lost_trials(storage, name):
                    enqueue_retry(study, study.get_trials(deepcopy=False)[number], max_retries=MAX_RETRIES)
                trial = _claim(study, storage, n_trials)
                if trial is None:
                    if count_trials(study).finished >= n_trials:
                        break
                    time.sleep(0.05)  # the last trials run elsewhere
                    continue
                trial.suggest_float("learning_rate", 1e-5, 1e-1, log=True)
                with Heartbeat(storage, name, trial._trial_id, interval=3600):
                    for epoch in range(1, epochs + 1):
                        store.record_epoch(name, trial._trial_id, trial.number, epoch_record(epoch))
                        trial.report(0.5, epoch)
                trial.set_user_attr(DIAGNOSIS, "healthy")
                study.tell(trial, 0.5)
                seconds.append(time.perf_counter() - begun)
            except Exception as e:  # counted, never hidden
                frame = traceback.extract_tb(e.__traceback__)[-1]
                errors.append(
                    f"{type(e).__name__} at {os.path.basename(frame.filename)}:{frame.lineno}: {e}"[:300]
                )
                break
        results.put({"errors": errors, "seconds": seconds, "end": time.time()})


def budget_run(
    location: StoreLocation, *, workers: int, n_trials: int, lost: int, epochs: int
) -> dict[str, Any]:
    """``workers`` processes fill one study's budget of ``n_trials``; returns the figures and the checks."""
    storage = open_storage(location)
    study = optuna.create_study(storage=storage, study_name=f"{STUDY_PREFIX}{uuid.uuid4().hex[:12]}")
    running = None
    try:
        lost_numbers = _add_lost_trials(study, lost)
        args = (n_trials, epochs)
        running = start_workers(_worker, location, study.study_name, args, count=workers, caller_waits=True)
        running.barrier.wait(timeout=WAIT_S)
        started = time.time()
        outcomes = running.collect()
        return _check(storage, study, outcomes, started, lost_numbers, n_trials=n_trials, epochs=epochs) | {
            "workers": workers
        }
    finally:
        end_workers_and_drop(running, storage, study.study_name)


def _check(
    storage: optuna.storages.RDBStorage,
    study: optuna.Study,
    outcomes: list[dict[str, Any]],
    started: float,
    lost_numbers: list[int],
    *,
    n_trials: int,
    epochs: int,
) -> dict[str, Any]:
    errors = [e for o in outcomes for e in o["errors"]]
    trials = study.get_trials(deepcopy=False)
    counts = count_trials(study)
    if counts.finished != n_trials:
        errors.append(f"{counts.finished} counted trials, expected {n_trials}")
    duplicated = [n for n, k in Counter(t.number for t in trials).items() if k > 1]
    if duplicated:
        errors.append(f"duplicate trial numbers {duplicated}")
    left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if left:
        errors.append(f"trials left RUNNING or WAITING: {left}")
    retries = Counter(origin for t in trials if (origin := retry_of(t)) is not None)
    for number in lost_numbers:
        trial = trials[number]
        if trial.state != TrialState.FAIL or stop_reason(trial) != "worker_lost":
            errors.append(f"lost trial {number} is {trial.state.name}, not failed as worker_lost")
        if retries[number] != 1:
            errors.append(f"lost trial {number} retried {retries[number]} times, expected once")
    complete = {t._trial_id for t in trials if t.state == TrialState.COMPLETE}
    rows = EpochStore(storage.engine).read_epochs(study.study_name)
    if int(rows["trial_id"].isin(complete).sum()) != len(complete) * epochs:
        errors.append("complete trials lack epoch rows")
    per_trial = sorted(s for o in outcomes for s in o["seconds"])
    wall = max(o["end"] for o in outcomes) - started
    return {
        "n_trials": n_trials,
        "lost": len(lost_numbers),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "trials_per_s": round(n_trials / wall, 1),
        "trial_ms_p50": round(1000 * statistics.median(per_trial), 1),
        "trial_ms_p95": round(1000 * per_trial[min(len(per_trial) - 1, int(0.95 * len(per_trial)))], 1),
    }
