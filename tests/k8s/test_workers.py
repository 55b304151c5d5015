"""The workers and report manifests' exact containers, run here as local processes on the real PostgreSQL.

A pod is played as Kubernetes would start it: the command and arguments of the rendered container with
its ``$(VAR)`` references expanded, its environment from the image (Dockerfile ENV), the rendered
ConfigMaps and the Secret that k8s/secret makes, ``JOB_COMPLETION_INDEX`` for an Indexed Job's pod, and
its volumes as folders (a ConfigMap's files, the report PVC, the /tmp emptyDir) at the mount paths the
container names. The image's ``python`` is this interpreter and its working directory (/app) is the
repository. Every process runs with the root filesystem read-only and only /tmp writable, as
``readOnlyRootFilesystem`` with a /tmp emptyDir has it (a private mount namespace, ``unshare -m``).
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from k8s_support import (
    REPO,
    config_map,
    container,
    dockerfile_env,
    dockerfile_instructions,
    find,
    secret_values,
)
from optuna.trial import TrialState

from search.execution.study import count_trials, open_study
from search.k8s.store_wait import wait_for_store
from search.spec.schema import STUDIES_DIR, load_spec
from search.store.engine import EPOCHS, HEARTBEATS, StoreError, open_storage
from search.store.location import StoreLocation

pytestmark = pytest.mark.db

PG_URL = os.environ.get("UNET_SEARCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# `exec "$@"` under a read-only root: / is remounted read-only in a private mount namespace, /tmp (a
# mount of its own first) stays writable, like a pod's emptyDir; /dev/shm is a mount of its own anyway.
READ_ONLY_ROOT = [
    "unshare",
    "--mount",
    "sh",
    "-c",
    'mount --make-rprivate / && mount --bind /tmp /tmp && mount -o remount,bind,ro / && exec "$@"',
    "read-only-root",
]
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class Container:
    """One container of a rendered pod, ready to run here."""

    argv: list[str]
    env: dict[str, str]

    def start(self) -> subprocess.Popen:
        return subprocess.Popen(
            READ_ONLY_ROOT + self.argv,
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(self, *, timeout: float) -> tuple[int, str]:
        process = self.start()
        try:
            out, _ = process.communicate(timeout=timeout)
        finally:
            stop(process)
        return process.returncode, out


def stop(process: subprocess.Popen) -> None:
    """Kill ``process`` if it still runs (a failed test must not leave workers behind)."""
    if process.poll() is None:
        process.kill()
        process.communicate()


def expand(text: str, declared: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a declared variable is replaced, ``$$`` is a literal ``$``."""
    return _REFERENCE.sub(lambda m: "$" if m[0] == "$$" else declared.get(m[1], m[0]), text)


def as_started(
    objects: list[dict[str, Any]],
    pod: dict[str, Any],
    name: str,
    *,
    secret: dict[str, str],
    root: Path,
    index: int | None = None,
) -> Container:
    """Container ``name`` of ``pod`` as Kubernetes starts it, with its volumes as folders under ``root``."""
    spec = container(pod, name)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts: list[tuple[str, str]] = []
    for mount in spec.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if volume.get("emptyDir", {}).get("medium") == "Memory":
            continue  # /dev/shm: this machine's own
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            (data,) = [
                o.get("data", {}) for o in objects if o["metadata"]["name"] == volume["configMap"]["name"]
            ]
            for key, text in data.items():
                (folder / key).write_text(text)
        mounts.append((mount["mountPath"], str(folder)))

    def local(value: str) -> str:
        for path, folder in sorted(mounts, key=lambda m: -len(m[0])):
            if value == path or value.startswith(path + "/"):
                return folder + value[len(path) :]
        return value

    declared: dict[str, str] = {}
    for env in spec.get("env", []):
        if "value" in env:
            declared[env["name"]] = expand(env["value"], declared)
        elif "resourceFieldRef" in env["valueFrom"]:
            ref = env["valueFrom"]["resourceFieldRef"]
            assert ref["resource"] == "limits.cpu" and ref["containerName"] == name
            declared[env["name"]] = str(math.ceil(float(spec["resources"]["limits"]["cpu"])))  # whole CPUs
        elif "configMapKeyRef" in env["valueFrom"]:
            ref = env["valueFrom"]["configMapKeyRef"]
            declared[env["name"]] = config_map_data(objects, ref["name"])[ref["key"]]
        else:
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "unet-search-store"
            declared[env["name"]] = secret[ref["key"]]
    if index is not None:
        declared["JOB_COMPLETION_INDEX"] = str(index)  # what the Job controller adds to an Indexed Job's pods
    image_env = dockerfile_env(dockerfile_instructions())
    env = {**image_env, "PATH": os.environ["PATH"], **declared}
    argv = [expand(arg, declared) for arg in spec.get("command", []) + spec.get("args", [])]
    assert argv[0] == "python", "every container of ours starts python"
    return Container([sys.executable, *map(local, argv[1:])], {k: local(v) for k, v in env.items()})


def config_map_data(objects: list[dict[str, Any]], name: str) -> dict[str, str]:
    (data,) = [
        o.get("data", {}) for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name
    ]
    return data


def smoke_study(folder: Path, prefix: str, **changes: Any) -> Path:
    """A copy of unet-smoke under a unique name (one per test run), with sections updated."""
    spec = yaml.safe_load((STUDIES_DIR / "unet-smoke.yaml").read_text())
    spec["name"] = f"{prefix}-{uuid.uuid4().hex[:8]}"
    for section, values in changes.items():
        spec[section] = {**spec[section], **values}
    path = folder / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def delete_study(name: str) -> None:
    """Remove a test study from the shared test database: Optuna's rows and ours."""
    storage = open_storage(PG_URL)
    try:
        if name in [s.study_name for s in optuna.get_all_study_summaries(storage)]:
            optuna.delete_study(study_name=name, storage=storage)
        with storage.engine.begin() as connection:
            for table in (EPOCHS, HEARTBEATS):
                connection.execute(table.delete().where(table.c.study_name == name))
    finally:
        storage.remove_session()
        storage.engine.dispose()


def epoch_rows(name: str) -> int:
    engine = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            query = sa.select(sa.func.count()).select_from(EPOCHS).where(EPOCHS.c.study_name == name)
            return connection.execute(query).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def read_only_root() -> None:
    """Check that processes can be run under a read-only root here (root, or user namespaces)."""
    # The root must refuse writes (`test -w` fails on a read-only mount, even for root) and /tmp must
    # take them. The repository is not probed: a checkout under /tmp rightly stays writable.
    probe = subprocess.run(
        [*READ_ONLY_ROOT, "sh", "-c", "test -w / && exit 3; touch /tmp/.ro-probe"],
        capture_output=True,
        text=True,
    )
    Path("/tmp/.ro-probe").unlink(missing_ok=True)
    if probe.returncode != 0:
        pytest.fail(
            f"cannot run with a read-only root here ({probe.stderr.strip() or probe.returncode}): "
            f"the test needs `unshare --mount` (run as root, as CI does)",
            pytrace=False,
        )


@dataclass
class Finished:
    """A study the workers manifest ran to its end."""

    path: Path
    name: str
    n_trials: int
    worker_pids: set[int]
    outputs: list[str]


@pytest.fixture(scope="module")
def finished(
    rendered: Callable[..., list[dict[str, Any]]],
    store_secret: Callable[..., dict[str, Any]],
    read_only_root: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Finished]:
    """Three workers of the rendered Indexed Job, with completion indexes 0..2, on one new study."""
    folder = tmp_path_factory.mktemp("workers")
    path = smoke_study(folder, "k8s-workers", budget={"n_trials": 6})
    name = path.stem
    objects = rendered("workers", study=str(path), workers=3)
    job = find(objects, "Job", "unet-search-workers")
    pod = job["spec"]["template"]["spec"]
    secret = secret_values(store_secret(UNET_SEARCH_STORAGE=PG_URL))
    try:
        code, out = as_started(objects, pod, "wait-for-store", secret=secret, root=folder / "init").run(
            timeout=120
        )
        assert code == 0 and "reachable" in out, out
        workers = [
            as_started(objects, pod, "worker", secret=secret, root=folder / f"pod-{i}", index=i)
            for i in range(job["spec"]["completions"])
        ]
        processes = [w.start() for w in workers]
        try:
            outputs = [p.communicate(timeout=600)[0] for p in processes]
        finally:
            for process in processes:
                stop(process)
        for process, out in zip(processes, outputs, strict=True):
            assert process.returncode == 0, out
        yield Finished(path, name, 6, {p.pid for p in processes}, outputs)
    finally:
        delete_study(name)


@pytest.mark.slow
def test_indexed_workers_reach_the_exact_trial_count_without_duplicates(finished):
    study = optuna.load_study(study_name=finished.name, storage=PG_URL)
    trials = study.get_trials(deepcopy=False)
    counts = count_trials(study)
    assert counts.finished == len(trials) == finished.n_trials, [t.state for t in trials]
    assert counts.running == counts.waiting == counts.retryable == 0
    assert sorted(t.number for t in trials) == list(range(finished.n_trials))
    # The baseline was enqueued once (by the study's creator), and no parameters ran twice.
    assert [t.params for t in trials if t.user_attrs.get("baseline")] == [
        {"learning_rate": 0.01, "optimizer": "adam"}
    ]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)
    # Every trial ran in one of the three worker processes, and its epochs were recorded once each.
    assert {t.user_attrs["worker_pid"] for t in trials} <= finished.worker_pids
    assert epoch_rows(finished.name) == sum(len(t.intermediate_values) for t in trials)
    stored = study.user_attrs
    assert stored["spec_source"].endswith(f"/etc/unet-search/studies/{finished.name}.yaml")


@pytest.mark.slow
def test_report_job_writes_the_csv_of_the_finished_study(rendered, store_secret, finished, tmp_path):
    objects = rendered("report", study=str(finished.path))
    pod = find(objects, "Job", "unet-search-report")["spec"]["template"]["spec"]
    assert config_map(objects, "unet-search-params")["data"]["STUDY_NAME"] == finished.name
    secret = secret_values(store_secret(UNET_SEARCH_STORAGE=PG_URL))
    report = as_started(objects, pod, "report", secret=secret, root=tmp_path)
    code, out = report.run(timeout=300)
    assert code == 0, out
    written = sorted((tmp_path / "reports" / finished.name).rglob("*.csv"))
    assert written, f"no CSV under the report volume: {out}"
    frames = [pd.read_csv(path) for path in written]
    assert any(len(frame) == finished.n_trials for frame in frames), [len(f) for f in frames]


@pytest.mark.slow
def test_sigterm_marks_the_trial_interrupted_and_the_job_replaces_the_pod(
    rendered, store_secret, read_only_root, tmp_path
):
    path = smoke_study(
        tmp_path,
        "k8s-sigterm",
        budget={"n_trials": 1, "max_epochs": 12},
        pruning={"plateau": {"warmup_epochs": 12, "patience": 1, "min_delta": 0.0, "divergence_factor": 5.0}},
    )
    name = path.stem
    objects = rendered("workers", study=str(path), workers=1)
    job = find(objects, "Job", "unet-search-workers")
    pod = job["spec"]["template"]["spec"]
    secret = secret_values(store_secret(UNET_SEARCH_STORAGE=PG_URL))
    worker = as_started(objects, pod, "worker", secret=secret, root=tmp_path / "pod", index=0)
    try:
        process = worker.start()
        try:
            deadline = time.monotonic() + 120
            while epoch_rows(name) < 1 and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert process.poll() is None, "the trial ended before SIGTERM could interrupt it"
            process.send_signal(signal.SIGTERM)  # what the kubelet sends on preemption or pod deletion
            out, _ = process.communicate(timeout=int(pod["terminationGracePeriodSeconds"]))
        finally:
            stop(process)
        assert process.returncode == 130, out
        # The Job's podFailurePolicy takes that exit as no failure: the pod is replaced, not counted.
        ignored = [
            r["onExitCodes"]
            for r in job["spec"]["podFailurePolicy"]["rules"]
            if r["action"] == "Ignore" and "onExitCodes" in r
        ]
        assert any(r["containerName"] == "worker" and process.returncode in r["values"] for r in ignored)
        study = optuna.load_study(study_name=name, storage=PG_URL)
        (first, retry) = study.get_trials(deepcopy=False)
        assert first.state == TrialState.FAIL and first.user_attrs["stop_reason"] == "interrupted"
        assert retry.state == TrialState.WAITING and retry.system_attrs["fixed_params"] == first.params

        # The replacement pod (same index) runs the interrupted parameters again and ends the study.
        code, out = worker.run(timeout=600)
        assert code == 0, out
        trials = optuna.load_study(study_name=name, storage=PG_URL).get_trials(deepcopy=False)
        assert trials[0].state == TrialState.FAIL and trials[0].number == first.number
        assert (
            trials[1].state in (TrialState.COMPLETE, TrialState.PRUNED) and trials[1].params == first.params
        )
        assert len(trials) == 2  # exactly n_trials counted, the interrupted one not among them
    finally:
        delete_study(name)


def test_concurrent_workers_create_the_study_once(tmp_path):
    """Workers that open a new study at the same instant: one creates it, the others load it complete."""
    spec = load_spec(str(smoke_study(tmp_path, "k8s-race")))
    storages = [open_storage(PG_URL) for _ in range(3)]
    barrier = threading.Barrier(len(storages))
    results: list[Any] = []

    def open_at_once(storage: optuna.storages.RDBStorage) -> None:
        barrier.wait()
        try:
            results.append(open_study(storage, spec)[1])
        except Exception as e:  # collected: the assertion below shows it
            results.append(e)

    try:
        threads = [threading.Thread(target=open_at_once, args=(s,)) for s in storages]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(results, key=str) == [False, False, True], results
        study = optuna.load_study(study_name=spec.name, storage=PG_URL)
        assert len(study.get_trials(deepcopy=False)) == len(spec.baselines)  # enqueued once
    finally:
        for storage in storages:
            storage.remove_session()
            storage.engine.dispose()
        delete_study(spec.name)


def test_wait_store_gives_up_on_an_unreachable_store_without_showing_the_password():
    with pytest.raises(StoreError) as raised:
        wait_for_store(
            StoreLocation.parse("postgresql+psycopg://unet:s3cret@127.0.0.1:1/unet_search"),
            timeout=0.5,
            interval=0.2,
        )
    message = str(raised.value)
    assert "still unreachable after 0.5 s" in message and "s3cret" not in message and "***" in message
    assert wait_for_store(StoreLocation.parse(PG_URL), timeout=10) == 1
