"""The Ray backend: the store-driven searcher, and `python -m search.run --backend ray` end to end.

The searcher tests drive :class:`search.execution.ray.searcher.StoreSearcher` by hand, as Tune would,
on a real
store (no Ray cluster). The end-to-end tests start a real local Ray (2 CPUs here) through the CLI:
the study's exact count and stop reasons, state parity with the local backend, a worker killed
mid-trial, the driver interrupted (a killed driver: test_ray_leftovers.py).
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from optuna.trial import TrialState
from ray.tune.search import Searcher
from test_run import epochs_recorded, study_file, trials, wait_for

from search.execution.data import load_study_data
from search.execution.objective import TrialContext
from search.execution.ray import worker as ray_worker
from search.execution.ray.backend import trial_resources
from search.execution.ray.searcher import MAX_START_FAILURES, StoreSearcher
from search.execution.ray.session import ClusterError
from search.execution.ray.worker import RESULT_KIND, SKIPPED, START_FAILED, WorkerJob
from search.execution.study import count_trials, open_study
from search.run import main
from search.spec.schema import load_spec
from search.store.engine import open_storage
from search.store.location import StoreLocation
from unet.history import EPOCH_FIELDS, TEXT_FIELDS

# A study whose curves give every kind of end (checked against the local backend in the parity test):
# trial 0 completes, 1, 4 and 5 stop on a plateau, 2 diverges, 3 falls below the median.
PARITY = {
    "budget": {"n_trials": 6, "max_epochs": 3},
    "pruning": {
        "plateau": {"warmup_epochs": 1, "patience": 1, "min_delta": 0.02, "divergence_factor": 5.0},
        "cross_trial": {"rule": "median", "warmup_epochs": 1, "min_trials": 1},
    },
}
# Trials long enough to be killed mid-way: no plateau stop within their epochs.
LONG = {"plateau": {"warmup_epochs": 1000, "patience": 1, "min_delta": 0.0, "divergence_factor": 5.0}}


# --- the searcher, driven by hand ---------------------------------------------------------------------


@pytest.fixture
def searcher_for(tmp_path: Path) -> Iterator:
    """``searcher_for(n_trials=..., timeout=..., **changes)``: a StoreSearcher on a new SQLite store."""
    made: list[StoreSearcher] = []

    def make(
        *, n_trials: int | None, compute: float | None = None, timeout: float | None = None, **changes
    ) -> StoreSearcher:
        spec = load_spec(str(study_file(tmp_path, "by-hand", **changes)))
        storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
        study, _ = open_study(storage, spec)
        ctx = TrialContext(spec=spec, storage=storage, data=load_study_data(spec), heartbeat_interval=0.2)
        searcher = StoreSearcher(study, ctx, n_trials=n_trials, compute=compute, timeout=timeout)
        made.append(searcher)
        return searcher

    yield make
    for searcher in made:
        searcher.abandon()  # stops the driver heartbeats of claims a test left open
        searcher.ctx.storage.engine.dispose()


def final(state: str, **values) -> dict:
    return {"kind": RESULT_KIND, "state": state, "value": None, "reason": None, "message": None, **values}


def test_searcher_claims_exactly_the_budget_then_finishes(searcher_for):
    searcher = searcher_for(n_trials=2)
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert (first["trial_number"], second["trial_number"]) == (0, 1)
    assert set(first) == {"optuna_trial_id", "trial_number", "salt"}  # ids only: nothing secret to Tune
    study = searcher.study
    # Both claimed trials are RUNNING and vouched for by this (the driver's) process until they start.
    running = study.get_trials(states=(TrialState.RUNNING,))
    assert [t.user_attrs["worker_pid"] for t in running] == [os.getpid(), os.getpid()]
    assert searcher.suggest("c") is None  # the budget is full while trials run: ask again later

    study.tell(first["trial_number"], 0.5)
    searcher.on_trial_complete("a", final("COMPLETE", value=0.5))
    assert searcher.suggest("d") is None  # one trial still runs and could be lost
    study.tell(second["trial_number"], state=TrialState.PRUNED)
    searcher.on_trial_complete("b", final("PRUNED", reason="plateau"))
    assert searcher.suggest("e") == Searcher.FINISHED
    assert len(study.trials) == 2


def test_searcher_claims_while_the_compute_budget_has_room_for_a_full_trial(searcher_for):
    # 2 full trials of 2 epochs: 4 epochs. Two trials pruned after one epoch leave room for a third.
    searcher = searcher_for(n_trials=None, compute=2, budget={"n_trials": None, "max_epochs": 2})
    study, epochs = searcher.study, searcher.ctx.epochs
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert searcher.suggest("c") is None  # both running trials may still train 2 epochs each

    def pruned_after_one_epoch(claim: dict, tune_id: str) -> None:
        record = {name: 0.5 for name in EPOCH_FIELDS} | {"epoch": 1} | {name: "" for name in TEXT_FIELDS}
        epochs.record_epoch(study.study_name, claim["optuna_trial_id"], claim["trial_number"], record)
        study.tell(claim["trial_number"], state=TrialState.PRUNED)
        searcher.on_trial_complete(tune_id, final("PRUNED", reason="underperforming"))

    pruned_after_one_epoch(first, "a")
    assert searcher.suggest("c") is None  # 1 spent + 2 reserved + 2 > 4
    pruned_after_one_epoch(second, "b")
    third = searcher.suggest("c")  # 2 spent + 2 <= 4: what pruning saved buys a trial
    assert third["trial_number"] == 2
    pruned_after_one_epoch(third, "c")
    assert searcher.suggest("d") == Searcher.FINISHED  # 3 spent + 2 > 4 and nothing runs: spent
    assert len(study.trials) == 3


def test_searcher_finishes_at_the_timeout(searcher_for):

    searcher = searcher_for(n_trials=5, timeout=1e-9)
    assert searcher.suggest("a") == Searcher.FINISHED
    assert [t.state for t in searcher.study.trials] == [TrialState.WAITING]  # the baseline never started


@pytest.mark.parametrize("report", ["error", "no final result"])
def test_lost_worker_fails_the_trial_and_enqueues_its_retry_once(searcher_for, report):
    searcher = searcher_for(n_trials=1, execution={"max_retries": 1})
    config = searcher.suggest("a")
    trial_id = config["optuna_trial_id"]
    storage = searcher.ctx.storage
    storage.set_trial_user_attr(trial_id, "ray_node_id", "node-1")  # the worker had started
    seen = []
    searcher.on_trial = lambda trial, outcome, counts: seen.append((trial.number, outcome.reason, counts))
    if report == "error":
        searcher.on_trial_complete("a", None, error=True)
    else:
        searcher.on_trial_complete("a", {"kind": "epoch"})
    lost = storage.get_trial(trial_id)
    assert lost.state == TrialState.FAIL
    assert lost.user_attrs["stop_reason"] == "worker_lost"
    assert lost.user_attrs["stop_detail"]["ray_node_id"] == "node-1"
    waiting = searcher.study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs == {"retry_of": 0, "retry": 1}
    # Lost before it drew its parameters, the baseline is retried with the ones it was enqueued with.
    assert waiting[0].system_attrs["fixed_params"] == {"learning_rate": 0.01, "optimizer": "adam"}
    assert seen[0][:2] == (0, "worker_lost") and seen[0][2].retryable == 1
    retry = searcher.suggest("b")  # claimed next
    assert retry["optuna_trial_id"] == waiting[0]._trial_id
    assert searcher.abort_message is None


def test_trials_that_cannot_start_stop_the_run(searcher_for):
    searcher = searcher_for(n_trials=10, execution={"max_retries": 0})
    for attempt in range(MAX_START_FAILURES):
        assert searcher.abort_message is None
        tune_id = f"t{attempt}"
        assert isinstance(searcher.suggest(tune_id), dict)
        searcher.on_trial_complete(tune_id, final(START_FAILED, message="DataError: no such folder /data"))
    assert "DataError: no such folder /data" in searcher.abort_message
    assert searcher.suggest("next") == Searcher.FINISHED
    failed = searcher.study.trials
    assert [t.user_attrs["stop_reason"] for t in failed] == ["worker_lost"] * MAX_START_FAILURES
    assert count_trials(searcher.study).finished == 0  # none of them counts toward the budget


def test_abandon_marks_running_trials_interrupted_and_enqueues_them(searcher_for):
    searcher = searcher_for(n_trials=3, execution={"max_retries": 0})
    searcher.suggest("a"), searcher.suggest("b")
    searcher.study.tell(1, 0.4)  # finished by its worker just before the interrupt: left alone
    assert searcher.abandon() == [0]
    by_number = {t.number: t for t in searcher.study.trials}
    assert by_number[0].state == TrialState.FAIL and by_number[0].user_attrs["stop_reason"] == "interrupted"
    assert by_number[1].state == TrialState.COMPLETE
    waiting = searcher.study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs["retry_of"] for t in waiting] == [0]  # retried even with max_retries 0
    assert searcher.claims == {}


@pytest.fixture
def in_process_worker(monkeypatch) -> list[dict]:
    """Makes ``run_trial`` runnable in this process: Tune's reports are collected, caches start empty."""
    reports: list[dict] = []
    monkeypatch.setattr(ray_worker.tune, "report", reports.append)
    node = SimpleNamespace(get_node_id=lambda: "node-here")
    monkeypatch.setattr(ray_worker.ray, "get_runtime_context", lambda: node)
    monkeypatch.setattr(ray_worker.ray, "get_gpu_ids", lambda: [])
    for cache in ("_storages", "_data", "_studies"):
        monkeypatch.setattr(ray_worker, cache, {})
    return reports


def job_for(searcher: StoreSearcher, url: str) -> WorkerJob:
    return WorkerJob(
        location=StoreLocation.parse(url),
        spec=searcher.ctx.spec,
        heartbeat_interval=0.2,
        report_epochs=False,
        verbose=True,
    )


def test_worker_runs_claimed_trials_and_reads_the_data_once(
    tmp_path, monkeypatch, searcher_for, in_process_worker
):
    loads = []
    real_load = ray_worker.load_study_data
    monkeypatch.setattr(ray_worker, "load_study_data", lambda spec: loads.append(spec) or real_load(spec))
    searcher = searcher_for(n_trials=2)
    job = job_for(searcher, f"sqlite:///{tmp_path / 's.db'}")
    for tune_id in ("a", "b"):
        ray_worker.run_trial(searcher.suggest(tune_id), job)
    assert len(loads) == 1  # the worker process keeps the data for its next trials
    reports = in_process_worker
    done = searcher.study.get_trials()
    assert [r["state"] for r in reports] == [t.state.name for t in done]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
    assert [r["value"] for r in reports if r["state"] == "COMPLETE"] == [
        t.value for t in done if t.state == TrialState.COMPLETE
    ]
    assert all(t.user_attrs["ray_node_id"] == "node-here" and t.intermediate_values for t in done)


def test_worker_that_cannot_set_up_reports_why_without_the_password(searcher_for, in_process_worker):
    searcher = searcher_for(n_trials=1)
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test"
    ray_worker.run_trial(searcher.suggest("a"), job_for(searcher, url))
    [report] = in_process_worker
    assert report["state"] == START_FAILED and "cannot open storage" in report["message"]
    assert "s3cret" not in report["message"]
    assert searcher.study.trials[0].state == TrialState.RUNNING  # the driver decides (retry or stop)


def test_worker_skips_a_trial_finished_before_it_started(tmp_path, searcher_for, in_process_worker):
    searcher = searcher_for(n_trials=1)
    config = searcher.suggest("a")
    searcher.study.tell(config["trial_number"], state=TrialState.FAIL)  # e.g. reaped while it waited
    ray_worker.run_trial(config, job_for(searcher, f"sqlite:///{tmp_path / 's.db'}"))
    assert [r["state"] for r in in_process_worker] == [SKIPPED]
    assert searcher.study.trials[0].params == {}  # nothing was drawn or trained


@pytest.mark.parametrize(
    ("cpus", "gpus", "nodes", "expected"),
    [
        (1, 0, [{"CPU": 2}], {"cpu": 1, "gpu": 0}),
        (0.5, 0.5, [{"CPU": 8, "GPU": 2}], {"cpu": 0.5, "gpu": 0.5}),  # two trials packed per GPU
        (1, 0.5, [{"CPU": 2}], {"cpu": 1, "gpu": 0}),  # a GPU study on a CPU-only machine
        (1, 0, [{"CPU": 2, "GPU": 1}], {"cpu": 1, "gpu": 0}),
        (4, 0, [{"CPU": 2}, {"CPU": 4}], {"cpu": 4, "gpu": 0}),  # fits the larger node
        (4, 0, [{"CPU": 2}, {"CPU": 2}], "largest Ray node has 2 CPUs"),
        (1, 2, [{"CPU": 8, "GPU": 1}], "largest Ray node has 1 GPUs"),
    ],
)
def test_trial_resources_against_the_cluster(monkeypatch, cpus, gpus, nodes, expected):
    listed = [{"Alive": True, "Resources": n} for n in nodes] + [{"Alive": False, "Resources": {"CPU": 64}}]
    monkeypatch.setattr("search.execution.ray.backend.ray.nodes", lambda: listed)
    if isinstance(expected, str):
        with pytest.raises(ClusterError, match=expected):
            trial_resources(cpus, gpus)
    else:
        assert trial_resources(cpus, gpus) == expected


# --- end to end, on a local Ray -------------------------------------------------------------------------


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so that the progress line is live (redrawn every epoch)."""

    def isatty(self) -> bool:
        return True


def summary_of(url: str, name: str) -> list[tuple]:
    """What must not depend on the backend, per trial."""
    return [
        (
            t.number,
            t.state,
            t.params,
            t.user_attrs.get("stop_reason"),
            t.user_attrs.get("stop_epoch"),
            t.intermediate_values,
            t.value,
            t.user_attrs.get("diagnosis"),
        )
        for t in trials(url, name)
    ]


def stored_epochs(db: Path, trial_id: int) -> list[int]:
    with sqlite3.connect(db) as con:
        query = "SELECT epoch FROM unet_search_epochs WHERE trial_id = ? ORDER BY epoch"
        return [epoch for (epoch,) in con.execute(query, (trial_id,))]


@pytest.mark.slow
def test_ray_backend_matches_the_local_backend(tmp_path, monkeypatch, capfd):
    """The same study file through both backends: the same trials, states, reasons and curves."""
    path = study_file(tmp_path, "parity", **PARITY)
    local_db, ray_db = tmp_path / "local.db", tmp_path / "ray.db"
    # Ray gives each 1-CPU trial one thread (OMP_NUM_THREADS=1); so does the local run, for equal sums.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["--study", str(path), "--storage", f"sqlite:///{local_db}", "--backend", "local"]) == 0
    finally:
        torch.set_num_threads(threads)
    local_out = capfd.readouterr().out

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["--study", str(path), "--storage", f"sqlite:///{ray_db}"]) == 0  # ray is the default
    out, err = capfd.readouterr()

    ray_trials = summary_of(f"sqlite:///{ray_db}", "parity")
    assert ray_trials == summary_of(f"sqlite:///{local_db}", "parity")
    states = [row[1] for row in ray_trials]
    assert len(ray_trials) == 6 and TrialState.RUNNING not in states
    assert {row[3] for row in ray_trials} == {None, "plateau", "diverged", "underperforming"}
    for t in trials(f"sqlite:///{ray_db}", "parity"):
        # Every epoch is an intermediate value, the last one included, and a row of the epoch table.
        assert sorted(t.intermediate_values) == stored_epochs(ray_db, t._trial_id)
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["stop_epoch"] == max(t.intermediate_values)
            assert t.user_attrs["stop_detail"] and t.user_attrs["stop_message"]
        assert t.user_attrs["worker_pid"] != os.getpid()  # trained in a Ray worker, not here
        assert t.user_attrs["ray_node_id"]

    shown = terminal.getvalue()
    assert "backend ray" in shown
    assert "trial 0 epoch 3: val Dice" in shown  # the workers reported each epoch to the live line
    assert "trial 3 pruned (underperforming)" in shown
    assert "Best trial #0" in out
    # Ray's own output stays quiet: the terminal shows the summary the local run printed, and nothing else.
    assert err == ""
    assert out.replace(str(ray_db), "STORE") == local_out.replace(str(local_db), "STORE")
    header = ("Study", "Data", "Checkpoints", "[", "\r[")  # the run's header lines, then the live line
    assert all(line.startswith(header) for line in shown.splitlines() if line)


def kill_when_training(url: str, name: str, *, after_epochs: int, errors: list) -> threading.Thread:
    """A thread that SIGKILLs the Ray worker of the first trial that trained ``after_epochs`` epochs."""
    db = Path(url.removeprefix("sqlite:///"))

    def target() -> None:
        try:

            def trained() -> optuna.trial.FrozenTrial | None:
                if epochs_recorded(db) < after_epochs:
                    return None
                running = [t for t in trials(url, name) if t.state == TrialState.RUNNING]
                return next((t for t in running if "ray_node_id" in t.user_attrs), None)

            wait_for(lambda: trained() is not None, timeout=300, what="a trial training in a Ray worker")
            pid = trained().user_attrs["worker_pid"]
            assert pid != os.getpid()
            os.kill(pid, signal.SIGKILL)
        except BaseException as e:  # reported by the test, which fails on it
            errors.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_worker_killed_mid_trial_is_failed_and_retried(tmp_path, capfd):
    path = study_file(
        tmp_path,
        "killed-worker",
        budget={"n_trials": 2, "max_epochs": 40},
        pruning=LONG,
        execution={"max_retries": 1},
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    errors: list = []
    killer = kill_when_training(url, "killed-worker", after_epochs=2, errors=errors)
    assert main(["--study", str(path), "--storage", url, "--backend", "ray"]) == 0
    killer.join(timeout=10)
    assert errors == []
    out, err = capfd.readouterr()
    # Ray's "(raylet) A worker died ..." stays out of the terminal: the progress line says it.
    assert "worker died" not in (out + err).lower() and "Traceback" not in out + err
    done = trials(url, "killed-worker")
    lost = done[0]
    assert lost.state == TrialState.FAIL and lost.user_attrs["stop_reason"] == "worker_lost"
    assert lost.user_attrs["stop_epoch"] >= 2
    retry = next(t for t in done if t.user_attrs.get("retry_of") == 0)
    assert retry.params == lost.params and retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert count_trials(optuna.load_study(study_name="killed-worker", storage=url)).finished == 2
    assert len(done) == 3 and TrialState.RUNNING not in [t.state for t in done]


@pytest.mark.slow
def test_sigterm_marks_running_trials_interrupted_and_exits_130(tmp_path, cli):
    # Trials far longer than the test: they are still running when the driver stops.
    changes = {"budget": {"n_trials": 2, "max_epochs": 200}, "pruning": LONG, "execution": {"concurrency": 2}}
    path = study_file(tmp_path, "stopped", **changes)
    db = tmp_path / "s.db"
    proc = cli("--study", str(path), "--storage", f"sqlite:///{db}", "--backend", "ray")
    wait_for(lambda: epochs_recorded(db) >= 2, timeout=300, what="the first epochs")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted: running trials are marked interrupted" in out
    assert "Study stopped" in out  # the summary is printed
    done = trials(f"sqlite:///{db}", "stopped")
    assert TrialState.RUNNING not in [t.state for t in done]
    interrupted = [t for t in done if t.user_attrs.get("stop_reason") == "interrupted"]
    assert len(interrupted) == 2 and all(t.state == TrialState.FAIL for t in interrupted)
    # Run again on resume: each interrupted trial that had its parameters (a trial still waiting for
    # its worker has drawn none, unless it is a baseline or a retry; the next trial samples anew).
    waiting = [t for t in done if t.state == TrialState.WAITING]
    with_params = [t.number for t in interrupted if t.params or t.system_attrs.get("fixed_params")]
    assert 0 in with_params  # the baseline, which has them from the start
    assert sorted(t.user_attrs["retry_of"] for t in waiting) == with_params
