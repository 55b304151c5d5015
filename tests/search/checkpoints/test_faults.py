"""Kept checkpoints under faults, the way issue 22 found them: copied stores, corrupt, missing, partial and
unrecorded files, a deleted folder, a kill between the index and the tell, an unwritable folder.

Each test runs ``search.run`` (local backend) on SQLite and PostgreSQL; on PostgreSQL the study file names
the artifacts folder (a server store has no default).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState
from test_run import REPO, study_file

from search import export, run
from search.checkpoints import store as checkpoint_store
from search.checkpoints.keep import kept
from search.checkpoints.store import default_location
from search.execution import objective
from search.outcome import CHECKPOINTS, TEST_SCORES
from search.store.engine import open_storage
from search.store.location import StoreLocation

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.db),
]
SYNTHETIC = {"n_train": 16, "n_val": 8, "size": 32, "foreground_fraction": 0.15, "num_classes": 1, "seed": 0}
# A baseline that one epoch leaves poor, so that a later trial beats it (and evicts its checkpoint).
POOR_BASELINE = [{"learning_rate": 1.0e-3, "optimizer": "sgd"}]


def tiny(tmp_path: Path, name: str, url: str, *, folder: Path | None = None, **changes) -> Path:
    """A one-epoch study file (no pruning possible): on a server store, its artifacts folder is named."""
    artifacts = dict(changes.pop("artifacts", {}))
    if not url.startswith("sqlite"):
        artifacts.setdefault("path", str(folder or tmp_path / "artifacts"))
    budget = {"n_trials": 2, "max_epochs": 1, **changes.pop("budget", {})}
    return study_file(tmp_path, name, budget=budget, artifacts=artifacts, **changes)


def root_of(url: str, tmp_path: Path) -> Path:
    """Where the tiny study's checkpoints go (the folder named in ``tiny``, or the store's default)."""
    default = default_location(StoreLocation.parse(url))
    return Path(default) if default is not None else tmp_path / "artifacts"


def search(url: str, study: Path, capsys, *extra: str) -> tuple[int, str, str]:
    status = run.main(["--study", str(study), "--storage", url, "--backend", "local", *extra])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def index_of(url: str, name: str) -> list[dict]:
    storage = open_storage(url)
    try:
        return kept(storage, name)
    finally:
        storage.engine.dispose()


def stored_index(url: str, name: str) -> list[dict]:
    return list(optuna.load_study(study_name=name, storage=url).user_attrs.get(CHECKPOINTS, []))


def assert_index_is_the_files(url: str, name: str, folder: Path) -> list[dict]:
    """Every index entry's file exists, every file is an entry's, and only COMPLETE trials are in it."""
    index = index_of(url, name)
    assert files(folder) == {e["artifact_id"] for e in index}
    states = {t.number: t.state for t in optuna.load_study(study_name=name, storage=url).trials}
    assert all(states[e["trial"]] == TrialState.COMPLETE for e in index)
    return index


def copy_sqlite(url: str, target: Path) -> None:
    """Copy a SQLite store whole (its write-ahead log included)."""
    with sqlite3.connect(sa.make_url(url).database) as source, sqlite3.connect(target) as copy:
        source.backup(copy)


# Case 2 ------------------------------------------------------------------------------------------------


@pytest.fixture
def copy_store(backend: str, tmp_path: Path, server_admin) -> Iterator:
    """``copy_store(url) -> url``: the store copied (a file copy, or a PostgreSQL template copy)."""
    made: list[str] = []

    def copy(url: str) -> str:
        if backend == "sqlite":
            target = Path(sa.make_url(url).database).with_name("copy.db")
            copy_sqlite(url, target)
            return f"sqlite:///{target}"
        original = sa.make_url(url).database
        name = f"{original}_copy"
        with server_admin(backend).connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
            c.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": original},
            )
            c.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE {original}"))
        made.append(name)
        return sa.make_url(url).set(database=name).render_as_string(hide_password=False)

    yield copy
    for name in made:
        with server_admin(backend).connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_copied_store_and_folder_work_on_their_own(storage_url, tmp_path, capsys, copy_store) -> None:
    url, name = storage_url, "copied"
    first = tiny(
        tmp_path, name, url, budget={"n_trials": 1}, baselines=POOR_BASELINE, artifacts={"keep_top_k": 1}
    )
    assert search(url, first, capsys)[0] == 0
    original_root = root_of(url, tmp_path)
    original_files = files(original_root / name)
    assert len(original_files) == 1
    # The copy: the store and its artifacts folder, side by side (on a server store, the copy's study file
    # names the copied folder).
    copy_url = copy_store(url)
    copy_root = Path(default_location(StoreLocation.parse(copy_url)) or tmp_path / "artifacts-copy")
    shutil.copytree(original_root, copy_root)
    second = tiny(
        tmp_path,
        name,
        url,
        folder=copy_root,
        baselines=POOR_BASELINE,
        artifacts={"keep_top_k": 1},
    )
    assert search(copy_url, second, capsys, "--n-trials", "4")[0] == 0
    copy_index = assert_index_is_the_files(copy_url, name, copy_root / name)
    assert copy_index[0]["trial"] != 0, "no later trial beat the baseline: the test saw no eviction"
    # The original's checkpoint is untouched and still exports.
    assert files(original_root / name) == original_files
    assert assert_index_is_the_files(url, name, original_root / name)[0]["trial"] == 0
    assert export.main(["--study", name, "--storage", url, "--out", str(tmp_path / "from-original")]) == 0
    assert export.main(["--study", name, "--storage", copy_url, "--out", str(tmp_path / "from-copy")]) == 0


def test_a_store_with_absolute_locations_is_still_read(tmp_path, capsys) -> None:
    # Stores written before relative locations named each checkpoint's folder in full.
    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert search(url, tiny(tmp_path, "old", url, budget={"n_trials": 1}), capsys)[0] == 0
    study = optuna.load_study(study_name="old", storage=url)
    root = str(root_of(url, tmp_path))
    study.set_user_attr(CHECKPOINTS, [{**e, "location": root} for e in stored_index(url, "old")])
    # Only the store moves: its checkpoints are read where the index says they are.
    moved = tmp_path / "moved"
    moved.mkdir()
    copy_sqlite(url, moved / "old.db")
    assert (
        export.main(
            ["--study", "old", "--storage", f"sqlite:///{moved / 'old.db'}", "--out", str(tmp_path / "o")]
        )
        == 0
    )
    assert (tmp_path / "o" / "model.pt").is_file()


# Case 3 ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_corrupt_or_missing_kept_checkpoint_is_skipped_by_test_scoring(
    storage_url, tmp_path, capsys, caplog
):
    url, name = storage_url, "scored"
    data = {"source": "synthetic", "synthetic": {**SYNTHETIC, "n_test": 4}}
    first = tiny(tmp_path, name, url, budget={"n_trials": 3}, data=data, test={"top_k": 1})
    assert search(url, first, capsys)[0] == 0
    folder = root_of(url, tmp_path) / name
    index = index_of(url, name)
    assert len(index) == 3
    corrupt, missing = index[1], index[2]
    (folder / corrupt["artifact_id"]).write_bytes(b"not a checkpoint")
    (folder / missing["artifact_id"]).unlink()
    (folder / str(uuid.uuid4())).write_bytes(b"")  # and an orphan to sweep
    raised = tiny(tmp_path, name, url, budget={"n_trials": 3}, data=data, test={"top_k": 3})
    status, out, err = search(url, raised, capsys)
    logged = caplog.text
    assert status == 0, err
    assert "Traceback" not in err + out + logged
    assert "Best trial #" in out  # the summary
    assert f"#{missing['trial']}" in next(line for line in err.splitlines() if "are missing from" in line)
    skipped = [
        line for line in logged.splitlines() if f"trial {corrupt['trial']}" in line and "skipped" in line
    ]
    assert len(skipped) == 1
    scores = optuna.load_study(study_name=name, storage=url).user_attrs[TEST_SCORES]
    assert sorted(scores) == [str(index[0]["trial"])]
    assert files(folder) == {index[0]["artifact_id"], corrupt["artifact_id"]}  # the orphan swept
    assert [e["trial"] for e in index_of(url, name)] == [index[0]["trial"], corrupt["trial"]]


# Case 4 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_files_no_trial_recorded_are_swept(storage_url, tmp_path, capsys) -> None:
    url, name = storage_url, "littered"
    study = tiny(tmp_path, name, url, budget={"n_trials": 1})
    assert search(url, study, capsys)[0] == 0
    folder = root_of(url, tmp_path) / name
    (kept_file,) = files(folder)
    # What a full disk and kills leave: a partial file, empty ones, a whole file Optuna never recorded.
    whole = (folder / kept_file).read_bytes()
    (folder / str(uuid.uuid4())).write_bytes(whole[: len(whole) // 2])
    (folder / str(uuid.uuid4())).write_bytes(b"")
    (folder / str(uuid.uuid4())).write_bytes(b"")
    (folder / str(uuid.uuid4())).write_bytes(whole)
    status, _, err = search(url, study, capsys, "--n-trials", "2")
    assert status == 0, err
    assert "4 file(s)" in err
    assert_index_is_the_files(url, name, folder)


KILLED_DURING_THE_UPLOAD = """
import os, shutil, signal, sys
from search import run
from search.store.retry import RetryingRDBStorage
if sys.argv[1] == "during-the-write":
    def copy(source, target, *args):
        target.write(source.read(1000))
        target.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    shutil.copyfileobj = copy
else:  # the file is written, Optuna has not recorded it yet
    record = RetryingRDBStorage.set_trial_system_attr
    def killed(self, trial_id, key, value):
        if key.startswith("artifacts:"):
            os.kill(os.getpid(), signal.SIGKILL)
        record(self, trial_id, key, value)
    RetryingRDBStorage.set_trial_system_attr = killed
sys.exit(run.main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("moment", ["during-the-write", "before-optuna-records-it"])
def test_a_kill_during_an_upload_leaves_no_file_behind(storage_url, tmp_path, capsys, moment) -> None:
    url, name = storage_url, "cut"
    study = tiny(tmp_path, name, url, budget={"n_trials": 1}, execution={"max_retries": 1})
    args = ["--study", str(study), "--storage", url, "--backend", "local"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_DURING_THE_UPLOAD, moment, *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = root_of(url, tmp_path) / name
    assert len(files(folder)) == 1 and stored_index(url, name) == []  # what the kill left
    status, _, err = search(url, study, capsys)
    assert status == 0, err
    assert len(assert_index_is_the_files(url, name, folder)) == 1  # the retry's


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only), unmounted afterwards."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def fill(folder: Path, *, leave: int) -> None:
    """Fill the file system of ``folder`` until about ``leave`` bytes are free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    (folder / "filler").write_bytes(b"\0" * max(0, free - leave))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_disk_full_during_the_search_leaves_no_partial_file(
    storage_url, tmp_path, capsys, tiny_tmpfs
) -> None:
    url, name = storage_url, "full"
    artifacts = tiny_tmpfs / "artifacts"
    artifacts.mkdir()
    fill(tiny_tmpfs, leave=32 * 1024)  # room for the start-up probe, not for a checkpoint (about 50 KiB)
    study = tiny(tmp_path, name, url, artifacts={"path": str(artifacts)})
    status, _, err = search(url, study, capsys)
    assert status == 0, err
    assert files(artifacts / name) == set()
    assert index_of(url, name) == []


# Case 5 ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_artifacts_folder_deleted_during_a_search(
    storage_url, tmp_path, capsys, caplog, monkeypatch
) -> None:
    url, name = storage_url, "deleted"
    root = root_of(url, tmp_path)
    real = objective.keep_checkpoint
    calls = []

    def then_delete(*args, **kwargs):
        artifact = real(*args, **kwargs)
        calls.append(artifact)
        if len(calls) == 2:
            shutil.rmtree(root)
        return artifact

    monkeypatch.setattr(objective, "keep_checkpoint", then_delete)
    study = tiny(tmp_path, name, url, budget={"n_trials": 3})
    status, _, err = search(url, study, capsys)
    assert status == 0, err
    # Said once (by the next trial that keeps one, or by the end of the run), naming the folder.
    warnings = [line for line in (err + caplog.text).splitlines() if "are missing from" in line]
    assert len(warnings) == 1 and str(root / name) in warnings[0] and "#0, #1" in warnings[0]
    assert len(assert_index_is_the_files(url, name, root / name)) == 1  # the third trial's
    monkeypatch.setattr(objective, "keep_checkpoint", real)
    caplog.clear()
    shutil.rmtree(root)
    status, _, err = search(url, study, capsys, "--n-trials", "4")
    assert status == 0, err
    warnings = [line for line in (err + caplog.text).splitlines() if "are missing from" in line]
    assert len(warnings) == 1 and str(root / name) in warnings[0]  # at the start of the run
    assert len(assert_index_is_the_files(url, name, root / name)) == 1  # the fourth trial's


# Case 6 ------------------------------------------------------------------------------------------------

KILLED_AFTER_THE_INDEX = """
import os, signal, sys
from search import run
from search.execution import objective
real = objective.keep_checkpoint
def killed(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # after the index is written, before the trial is told
objective.keep_checkpoint = killed
sys.exit(run.main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_trial_killed_before_its_tell_keeps_no_checkpoint(storage_url, tmp_path, capsys) -> None:
    url, name = storage_url, "told"
    study = tiny(tmp_path, name, url, execution={"max_retries": 1})
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_AFTER_THE_INDEX,
            "--study",
            str(study),
            "--storage",
            url,
            "--backend",
            "local",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [e["trial"] for e in stored_index(url, name)] == [0]
    status, _, err = search(url, study, capsys)
    assert status == 0, err
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert trials[0].state == TrialState.FAIL
    index = assert_index_is_the_files(url, name, root_of(url, tmp_path) / name)
    assert 0 not in [e["trial"] for e in index] and len(index) == 2
    out = tmp_path / "out"
    assert export.main(["--study", name, "--storage", url, "--trial", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: trial #0 of 'told'") and err.count("\n") == 1


# Case 7 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("code", "reason"), [(errno.EROFS, "Read-only file system"), (errno.ENOSPC, "No space left")]
)
def test_an_unwritable_artifacts_folder_stops_before_any_trial(
    storage_url, tmp_path, capsys, monkeypatch, code, reason
) -> None:
    # As root, os.access says yes to a read-only mount: the folder is probed by writing a file.
    def refuse(path: Path) -> None:
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(checkpoint_store, "_write_probe", refuse, raising=False)
    study = tiny(tmp_path, "unwritable", storage_url)
    status, _, err = search(storage_url, study, capsys)
    assert status == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and reason in err
    assert "unwritable" not in optuna.get_all_study_names(storage_url)


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A read-only bind mount of an empty folder (root only), unmounted afterwards."""
    source, mount = tmp_path / "source", tmp_path / "read-only"
    source.mkdir()
    mount.mkdir()
    if subprocess.run(
        ["mount", "--bind", "-o", "ro", str(source), str(mount)], capture_output=True
    ).returncode:
        pytest.skip("a read-only bind mount needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_read_only_mount_stops_before_any_trial(tmp_path, capsys, read_only_folder) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = tiny(tmp_path, "ro", url, artifacts={"path": str(read_only_folder)})
    status, _, err = search(url, study, capsys)
    assert status == 2 and "Read-only file system" in err and err.count("\n") == 1
    assert "ro" not in optuna.get_all_study_names(url)


def test_a_full_disk_stops_before_any_trial(tmp_path, capsys, tiny_tmpfs) -> None:
    fill(tiny_tmpfs, leave=0)
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = tiny(tmp_path, "full", url, artifacts={"path": str(tiny_tmpfs)})
    status, _, err = search(url, study, capsys)
    assert status == 2 and "No space left" in err and err.count("\n") == 1
