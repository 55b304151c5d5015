"""GPU scheduling on real Ray clusters that advertise GPUs this machine does not have.

Ray schedules by declared resources: a node started with ``ray start --num-gpus 4`` hands out four GPU ids
(and sets ``CUDA_VISIBLE_DEVICES`` for each trial's process) whether or not the cards exist, so the real
scheduling path (packing, assignment, refusal, placement on nodes) runs here without a GPU. The trials
themselves see no CUDA (the CPU build of torch) and train on the CPU, which the worker records.

Every cluster is a set of ``ray start --block`` processes on loopback with ports, a temp dir and an auth
token of their own, each in its own session, all killed afterwards (never a global ``ray stop``).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState
from test_ray_backend import (  # noqa: F401 (fixtures)
    LONG,
    in_process_worker,
    job_for,
    searcher_for,
)
from test_ray_cluster import free_port, port_open
from test_run import REPO, study_file, trials, wait_for

from search.execution import objective
from search.execution.ray import worker as ray_worker
from search.processes import end_session

# Prints {node id: resources} of the alive nodes once there are as many as asked for.
NODES_SCRIPT = """
import json, sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
while len([n for n in ray.nodes() if n["Alive"]]) < int(sys.argv[2]):
    time.sleep(0.2)
print(json.dumps({n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}))
"""

# Tiny trials with enough epochs that trials started together are still running together; no pruning.
TINY = {"source": "synthetic", "synthetic": {"n_train": 8, "n_val": 4, "size": 16, "seed": 0}}
NO_PRUNING = {**LONG, "cross_trial": {"rule": "none", "warmup_epochs": 1, "min_trials": 1}}
# Learning rates that do not diverge on it (a diverged trial stops early and ends PRUNED).
CALM = {
    "learning_rate": {"type": "float", "low": 1.0e-3, "high": 3.0e-3, "log": True},
    "optimizer": {"type": "categorical", "choices": ["adam"]},
}
BASELINE = [{"learning_rate": 2.0e-3, "optimizer": "adam"}]


@dataclass
class Cluster:
    address: str  # host:port of the head's GCS
    env: dict[str, str]  # environment of every process of the cluster and its drivers
    nodes: dict[str, dict[str, float]] = field(default_factory=dict)  # node id -> resources


@contextlib.contextmanager
def ray_cluster(*nodes: dict[str, float]) -> Iterator[Cluster]:
    """A cluster of ``nodes`` (``{"cpus": .., "gpus": ..}`` each; the first is the head)."""
    root = Path(tempfile.mkdtemp(prefix="rg", dir="/tmp"))  # Ray's socket paths must stay short
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    port = free_port()
    started: list[subprocess.Popen] = []
    ray_cli = str(Path(sys.executable).with_name("ray"))  # the environment's, whatever PATH says
    try:
        for i, node in enumerate(nodes):
            where = (
                ["--head", f"--port={port}", "--include-dashboard=false"]
                if i == 0
                else [f"--address=127.0.0.1:{port}"]
            )
            command = [
                ray_cli,
                "start",
                *where,
                f"--temp-dir={root / f'n{i}'}",
                f"--num-cpus={node['cpus']:g}",
                f"--num-gpus={node['gpus']:g}",
                "--disable-usage-stats",
                "--block",
            ]
            log = (root / f"n{i}.log").open("w")
            started.append(
                subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
            if i == 0:
                wait_for(lambda: port_open(port), timeout=120, what="the head node")
        listed = subprocess.run(
            [sys.executable, "-c", NODES_SCRIPT, f"127.0.0.1:{port}", str(len(nodes))],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
        found = json.loads(listed.stdout.strip().splitlines()[-1])
        yield Cluster(f"127.0.0.1:{port}", env, found)
    finally:
        for proc in reversed(started):
            end_session(proc.pid)
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def run_study(cluster: Cluster, path: Path, url: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m search.run --backend ray`` against the cluster (its address from RAY_ADDRESS)."""
    command = [sys.executable, "-m", "search.run", "--study", str(path), "--storage", url, "--backend", "ray"]
    return subprocess.run(
        command,
        env={**cluster.env, "RAY_ADDRESS": cluster.address},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def epoch_intervals(db: Path) -> dict[int, tuple[dt.datetime, dt.datetime]]:
    """Trial number -> (first, last) time an epoch of it was stored: when the trial was training."""
    query = "SELECT trial_number, min(recorded_at), max(recorded_at) FROM unet_search_epochs GROUP BY 1"
    with sqlite3.connect(db, timeout=5) as con:
        return {
            n: (dt.datetime.fromisoformat(a), dt.datetime.fromisoformat(b)) for n, a, b in con.execute(query)
        }


def most_at_once(intervals: list[tuple[dt.datetime, dt.datetime]]) -> int:
    """The largest number of the intervals that overlap at one moment."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: e)
    running = most = 0
    for _, step in events:  # at equal times an end (-1) sorts first: touching is not overlapping
        running += step
        most = max(most, running)
    return most


@pytest.fixture(scope="module")
def gpus_beside_the_head() -> Iterator[Cluster]:
    """A head with 4 CPUs and no GPU, and a node with 4 CPUs and 2 (fake) GPUs: one cluster for all tests.

    The head has the CPUs a trial asks for, so a GPU request that Ray (or the backend) dropped would put
    trials on it, where the driver is; two GPUs are the fewest that show trials packed per GPU id.
    """
    with ray_cluster({"cpus": 4, "gpus": 0}, {"cpus": 4, "gpus": 2}) as cluster:
        yield cluster


@pytest.mark.slow
def test_half_gpu_trials_pack_two_per_gpu_on_the_gpu_node_never_the_head(tmp_path, gpus_beside_the_head):
    cluster = gpus_beside_the_head
    gpu_node = next(node for node, res in cluster.nodes.items() if res.get("GPU", 0) > 0)
    path = study_file(
        tmp_path,
        "packed",
        data=TINY,
        space=CALM,
        baselines=BASELINE,
        budget={"n_trials": 4, "max_epochs": 100},
        pruning=NO_PRUNING,
        execution={"concurrency": 4, "cpus_per_trial": 1, "gpus_per_trial": 0.5, "max_retries": 0},
    )
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    done = run_study(cluster, path, url, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    finished = trials(url, "packed")
    assert [t.state for t in finished] == [TrialState.COMPLETE] * 4
    # Every trial ran on the GPU node, none on the head that has CPUs for it but no GPU.
    assert {t.user_attrs["ray_node_id"] for t in finished} == {gpu_node}
    intervals = epoch_intervals(db)
    assert sorted(intervals) == list(range(4))
    # All four trained at the same time: the last to start began before the first to end ended.
    assert most_at_once(list(intervals.values())) == 4
    for t in finished:
        # One GPU id each (half a GPU), and exactly that id visible to the trial's process.
        assert len(t.user_attrs["gpu_ids"]) == 1, t.user_attrs
        assert t.user_attrs["cuda_visible_devices"] == ",".join(t.user_attrs["gpu_ids"])
        # torch (CPU build) sees no CUDA: the trial trained on the CPU and says so.
        assert t.user_attrs["gpu_fallback"] == "cpu: torch sees no CUDA device"
    per_gpu = collections.Counter(t.user_attrs["gpu_ids"][0] for t in finished)
    assert per_gpu == {"0": 2, "1": 2}
    # No GPU carried more than its two half-GPU trials at any moment.
    for gpu in per_gpu:
        on_gpu = [intervals[t.number] for t in finished if t.user_attrs["gpu_ids"] == [gpu]]
        assert most_at_once(on_gpu) <= 2


@pytest.mark.slow
def test_trial_needing_more_gpus_than_any_node_is_refused(tmp_path, gpus_beside_the_head):
    path = study_file(tmp_path, "greedy", execution={"concurrency": 1, "gpus_per_trial": 3})
    url = f"sqlite:///{tmp_path / 's.db'}"
    done = run_study(gpus_beside_the_head, path, url, tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    # The largest node is the GPU node, not the head (0 GPUs) the driver runs on.
    assert "gpus_per_trial is 3 but the largest Ray node has 2 GPUs" in errors[0]
    # Refused before any trial was claimed: only the baseline enqueued when the study was opened waits.
    assert [t.state for t in trials(url, "greedy")] == [TrialState.WAITING]


def test_packed_trial_out_of_gpu_memory_fails_with_its_params_and_the_next_runs(
    tmp_path,
    monkeypatch,
    searcher_for,  # noqa: F811 (fixtures imported above)
    in_process_worker,  # noqa: F811 (fixtures imported above)
):
    # Two trials packed on GPU 0 (Ray's ids, patched in): the first runs out of GPU memory.
    monkeypatch.setattr(ray_worker.ray, "get_gpu_ids", lambda: [0])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    real_fit = objective.fit
    calls = []

    def fit(config, train, val, on_epoch=None, **kwargs):
        calls.append(config)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
        return real_fit(config, train, val, on_epoch, **kwargs)

    monkeypatch.setattr(objective, "fit", fit)
    searcher = searcher_for(n_trials=2)
    job = job_for(searcher, f"sqlite:///{tmp_path / 's.db'}")
    for tune_id in ("a", "b"):
        ray_worker.run_trial(searcher.suggest(tune_id), job)
    oom, after = searcher.study.get_trials()
    assert oom.state == TrialState.FAIL and oom.user_attrs["stop_reason"] == "out_of_memory"
    assert oom.user_attrs["stop_detail"]["params"] == oom.params and oom.params
    assert "1.50 GiB" in oom.user_attrs["stop_detail"]["error"]
    assert in_process_worker[0]["reason"] == "out_of_memory"
    assert after.state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert oom.user_attrs["gpu_ids"] == after.user_attrs["gpu_ids"] == ["0"]
    assert after.user_attrs["cuda_visible_devices"] == "0"
