"""A real two-node Ray cluster on this machine: a study spread over both nodes survives losing one.

The head and the worker node are two `ray start --block` processes, one CPU each, each in a session of
its own so that exactly its processes can be killed (a lost node) and cleaned up afterwards. (`ray stop
--force` would also stop every other Ray on this machine.) Nodes and driver share a token of their own
(``RAY_AUTH_TOKEN``), so nothing is read from or written to the home directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from optuna.trial import TrialState
from test_ray_backend import LONG
from test_run import REPO, study_file, trials, wait_for

from search.processes import end_session

# Prints the alive nodes as {node id: resources} once there are two.
NODES_SCRIPT = """
import json, sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
while len([n for n in ray.nodes() if n["Alive"]]) < 2:
    time.sleep(0.2)
print(json.dumps({n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}))
"""


@dataclass
class Cluster:
    address: str  # host:port of the head's GCS
    env: dict[str, str]  # environment of every process of the cluster and its drivers
    head_node: str  # Ray node ids
    worker_node: str
    worker: subprocess.Popen  # `ray start` of the worker node, leader of its session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A head and a worker node (1 CPU each; the worker node has the resource ``worker_node``)."""
    root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # Ray's socket paths must stay short
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    port = free_port()
    started: list[subprocess.Popen] = []

    def ray_start(name: str, *args: str) -> subprocess.Popen:
        ray_cli = str(Path(sys.executable).with_name("ray"))  # the environment's, whatever PATH says
        command = [ray_cli, "start", *args, f"--temp-dir={root / name}", "--num-cpus=1", "--num-gpus=0"]
        log = (root / f"{name}.log").open("w")
        proc = subprocess.Popen(
            [*command, "--disable-usage-stats", "--block"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    try:
        ray_start("head", "--head", f"--port={port}", "--include-dashboard=false")
        wait_for(lambda: port_open(port), timeout=120, what="the head node")
        worker = ray_start("worker", f"--address=127.0.0.1:{port}", '--resources={"worker_node": 1}')
        listed = subprocess.run(
            [sys.executable, "-c", NODES_SCRIPT, f"127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
        nodes = json.loads(listed.stdout.strip().splitlines()[-1])
        worker_node = next(node for node, resources in nodes.items() if "worker_node" in resources)
        head_node = next(node for node in nodes if node != worker_node)
        yield Cluster(f"127.0.0.1:{port}", env, head_node, worker_node, worker)
    finally:
        for proc in reversed(started):
            end_session(proc.pid)
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def trials_by_node(db: Path) -> list[tuple[int, str, str, int]]:
    """(number, state, ray node id, epochs stored) of every trial that reached a Ray worker."""
    query = """
        SELECT t.number, t.state, a.value_json,
               (SELECT count(*) FROM unet_search_epochs e WHERE e.trial_id = t.trial_id)
        FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'ray_node_id'
    """
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return [(n, state, json.loads(node), epochs) for n, state, node, epochs in con.execute(query)]
    except sqlite3.OperationalError:  # not created yet
        return []


@pytest.mark.slow
def test_study_spreads_over_two_nodes_and_survives_losing_one(tmp_path, cluster):
    path = study_file(
        tmp_path,
        "spread",
        budget={"n_trials": 8, "max_epochs": 15},
        pruning=LONG,
        execution={"concurrency": 2, "cpus_per_trial": 1, "max_retries": 1},
    )
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    # The cluster's address comes from RAY_ADDRESS, as on a node of a cluster.
    driver = subprocess.Popen(
        [sys.executable, "-m", "search.run", "--study", str(path), "--storage", url, "--backend", "ray"],
        env={**cluster.env, "RAY_ADDRESS": cluster.address},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    training: list[int] = []  # the number of the trial the worker node is training when it is lost
    try:

        def worker_node_is_training_its_second_trial() -> bool:
            assert driver.poll() is None, "the study ended before the worker node could be killed"
            on_worker = [row for row in trials_by_node(db) if row[2] == cluster.worker_node]
            finished = [row for row in on_worker if row[1] in ("COMPLETE", "PRUNED")]
            training[:] = [row[0] for row in on_worker if row[1] == "RUNNING" and row[3] >= 1]
            return bool(finished and training)

        wait_for(worker_node_is_training_its_second_trial, timeout=400, what="the worker node's 2nd trial")
        end_session(cluster.worker.pid)  # the node is lost: its raylet, agents and workers at once
        out, _ = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        end_session(driver.pid)
    assert driver.returncode == 0, out

    done = trials(url, "spread")
    assert TrialState.RUNNING not in [t.state for t in done]
    assert len({t.number for t in done}) == len(done)
    counted = [t for t in done if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 8  # the exact count
    assert {t.user_attrs["ray_node_id"] for t in counted} == {cluster.head_node, cluster.worker_node}
    lost = {t.number: t for t in done if t.user_attrs.get("stop_reason") == "worker_lost"}
    # The trial that was training there is lost with the node, and its retry counts, on the head node.
    [number] = training
    assert lost[number].user_attrs["ray_node_id"] == cluster.worker_node
    retries = [t for t in counted if t.user_attrs.get("retry_of") == number]
    assert [t.params for t in retries] == [lost[number].params]
    assert retries[0].user_attrs["ray_node_id"] == cluster.head_node  # the only node left
    # Tune may hand the node one more trial before Ray declares it dead (seen once in CI): that trial is
    # lost too, on that node or before it reached one, and the budget is still filled (8 counted).
    for other in set(lost) - {number}:
        assert lost[other].user_attrs.get("ray_node_id") in (cluster.worker_node, None)
