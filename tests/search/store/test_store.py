"""The study store on real SQLite, PostgreSQL and MariaDB: URLs and errors, epochs, heartbeats, reaping."""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import optuna
import pandas as pd
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from search.outcome import WorkerIdentity, trial_worker
from search.processes import process_start_time
from search.store.engine import EPOCHS, HEARTBEATS, StoreError, open_storage
from search.store.epochs import EPOCH_COLUMNS, EpochStore
from search.store.heartbeat import Heartbeat, worker_identity
from search.store.location import StoreLocation, redact_url
from search.store.reaper import reap_lost_trials
from unet.errors import ConfigError
from unet.history import EPOCH_FIELDS

REPO_ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "s3cret-Pw"


def epoch_record(epoch: int, value: float) -> dict[str, float]:
    """A complete epoch record whose metrics all equal ``value``."""
    return {field: value for field in EPOCH_FIELDS} | {"epoch": epoch}


def run_python(script: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python -c script args`` with this repository importable."""
    env = os.environ | {"PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], *, what: str, timeout_s: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s`` (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


# ---- URLs and errors -------------------------------------------------------------------------------


def test_default_storage_url_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    location = StoreLocation.parse(None, directory=Path("runs"))
    assert location.secret_url() == f"sqlite:///{tmp_path.resolve()}/runs/unet-search.db"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (
            "postgresql+psycopg://alice:s3cret@db.example:5432/studies",
            "postgresql+psycopg://alice:***@db.example:5432/studies",
        ),
        ("mysql+pymysql://root:p%40ss@127.0.0.1/test", "mysql+pymysql://root:***@127.0.0.1/test"),
        ("mysql+pymysql://root@127.0.0.1:3306/test", "mysql+pymysql://root@127.0.0.1:3306/test"),
        ("sqlite:////tmp/runs/unet-search.db", "sqlite:////tmp/runs/unet-search.db"),
        ("not a url://bob:hunter2@host/db", "not a url://bob:***@host/db"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("make_url", "expected"),
    [
        pytest.param(lambda tmp, server: "garbage", "is not a valid SQLAlchemy URL", id="garbage"),
        pytest.param(
            lambda tmp, server: "postgresql+nosuchdriver://u@127.0.0.1/test",
            "is not a valid SQLAlchemy URL",
            id="driver",
        ),
        pytest.param(
            lambda tmp, server: "nosuchdialect://u@127.0.0.1/test",
            "is not a valid SQLAlchemy URL",
            id="dialect",
        ),
        pytest.param(lambda tmp, server: "sqlite://", "in-memory SQLite", id="sqlite-memory"),
        pytest.param(
            lambda tmp, server: f"sqlite:///{tmp}/missing/x.db", "does not exist: create it", id="sqlite-dir"
        ),
        pytest.param(
            lambda tmp, server: "postgresql+psycopg://postgres@127.0.0.1:1/test",
            "check that the server is running",
            id="pg-port",
        ),
        pytest.param(
            lambda tmp, server: "mysql+pymysql://root@127.0.0.1:1/test",
            "check that the server is running",
            id="mariadb-port",
        ),
        pytest.param(
            lambda tmp, server: server("postgresql", "unet_search_no_such_db"),
            "(CREATE DATABASE unet_search_no_such_db)",
            id="pg-database",
            marks=pytest.mark.db,
        ),
        pytest.param(
            lambda tmp, server: server("mariadb", "unet_search_no_such_db"),
            "(CREATE DATABASE unet_search_no_such_db)",
            id="mariadb-database",
            marks=pytest.mark.db,
        ),
    ],
)
def test_bad_storage_raises_one_line(
    make_url: Callable[[Path, Callable[..., str]], str],
    expected: str,
    tmp_path: Path,
    server_url: Callable[..., str],
) -> None:
    with pytest.raises(StoreError) as caught:
        open_storage(make_url(tmp_path, server_url))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_uninstalled_driver_names_the_installed_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # makes "import psycopg2" fail
    with pytest.raises(StoreError, match=r"driver 'psycopg2'.*postgresql\+psycopg://"):
        open_storage("postgresql+psycopg2://postgres@127.0.0.1/test")


def test_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database " * 100)
    with pytest.raises(StoreError, match=r"notes\.db' cannot be opened: file is not a database"):
        open_storage(f"sqlite:///{path}")


@pytest.mark.parametrize(
    ("backend", "url"),
    [
        pytest.param(
            "postgresql", f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/test", id="pg-refused"
        ),
        pytest.param("mariadb", f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:1/test", id="mariadb-refused"),
        pytest.param("mariadb", "", id="mariadb-wrong-password", marks=pytest.mark.db),
    ],
)
def test_password_never_shown(
    backend: str, url: str, caplog: pytest.LogCaptureFixture, server_url: Callable[..., str]
) -> None:
    url = url or sa.make_url(server_url(backend)).set(password=PASSWORD).render_as_string(hide_password=False)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as caught:
        open_storage(url)
    assert ":***@" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in caplog.text


@pytest.mark.db
def test_password_not_logged_when_opening(
    fresh_database: Callable[[str], AbstractContextManager[str]], caplog: pytest.LogCaptureFixture
) -> None:
    # The PostgreSQL test server trusts local users, so a password in the URL is accepted and ignored.
    caplog.set_level(logging.DEBUG)
    with fresh_database("postgresql") as url:
        storage = open_storage(sa.make_url(url).set(password=PASSWORD).render_as_string(hide_password=False))
        optuna.create_study(storage=storage, study_name="pw").ask()
        storage.engine.dispose()
    assert "opened study store" in caplog.text
    assert PASSWORD not in caplog.text


# ---- opening -------------------------------------------------------------------------------------


def test_open_creates_our_tables(storage: optuna.storages.RDBStorage, storage_url: str) -> None:
    tables = set(sa.inspect(storage.engine).get_table_names())
    assert {"unet_search_epochs", "unet_search_heartbeats", "trials", "studies"} <= tables
    # Reopening finds everything in place and works on the same data.
    optuna.create_study(storage=storage, study_name="reopen")
    again = open_storage(storage_url)
    assert [s.study_name for s in again.get_all_studies()] == ["reopen"]
    again.engine.dispose()


def test_sqlite_store_uses_wal(tmp_path: Path) -> None:
    url = StoreLocation.parse(None, directory=tmp_path).secret_url()
    open_storage(url).engine.dispose()
    with sqlite3.connect(tmp_path / "unet-search.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def open_concurrently(url: str, n_openers: int = 4) -> list[object]:
    """Let ``n_openers`` threads call ``open_storage(url)`` at the same moment; "ok" or the error each."""
    results: list[object] = []
    barrier = threading.Barrier(n_openers)

    def open_one() -> None:
        barrier.wait()
        try:
            open_storage(url).engine.dispose()
            results.append("ok")
        except Exception as e:  # collected for the caller's assertion, which shows it
            results.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(n_openers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_first_open(
    backend: str, fresh_database: Callable[[str], AbstractContextManager[str]]
) -> None:
    """Four openers racing to create the tables of a new database all succeed."""
    # The race is lost only now and then: several rounds where a new database is cheap (SQLite).
    for _ in range(6 if backend == "sqlite" else 1):
        with fresh_database(backend) as url:
            assert open_concurrently(url) == ["ok"] * 4


# ---- epochs --------------------------------------------------------------------------------------


def test_epoch_round_trip(storage: optuna.storages.RDBStorage) -> None:
    epochs = EpochStore(storage.engine)
    study = optuna.create_study(storage=storage, study_name="epochs")
    first, second = study.ask(), study.ask()
    other = optuna.create_study(storage=storage, study_name="other").ask()
    # Written out of order; trial 0's epoch 1 twice (the second write wins); NaN and inf become NULL.
    epochs.record_epoch("epochs", second._trial_id, 1, epoch_record(1, 0.25))
    epochs.record_epoch("epochs", first._trial_id, 0, epoch_record(2, 0.5) | {"val_loss": float("nan")})
    epochs.record_epoch("epochs", first._trial_id, 0, epoch_record(1, 9.0))
    epochs.record_epoch("epochs", first._trial_id, 0, epoch_record(1, 0.75) | {"grad_norm": -math.inf})
    epochs.record_epoch("other", other._trial_id, 0, epoch_record(1, 1.0))

    frame = epochs.read_epochs("epochs")

    assert list(frame.columns) == list(EPOCH_COLUMNS)
    assert list(frame[["trial_number", "epoch"]].itertuples(index=False, name=None)) == [
        (0, 1),
        (0, 2),
        (1, 1),
    ]
    assert frame["trial_id"].tolist() == [first._trial_id, first._trial_id, second._trial_id]
    expected_loss = [0.75, 0.5, 0.25]
    assert frame["train_loss"].tolist() == expected_loss
    assert math.isnan(frame["val_loss"][1]) and frame["val_loss"][[0, 2]].tolist() == [0.75, 0.25]
    assert math.isnan(frame["grad_norm"][0])
    assert frame["recorded_at"].notna().all()
    with storage.engine.connect() as connection:
        nulls = connection.execute(
            sa.select(sa.func.count()).where(EPOCHS.c.val_loss.is_(None) | EPOCHS.c.grad_norm.is_(None))
        ).scalar()
    assert nulls == 2
    assert epochs.last_epoch(first._trial_id) == 2
    assert epochs.last_epoch(12345) == 0


def test_read_epochs_of_unknown_study_is_empty(storage: optuna.storages.RDBStorage) -> None:
    frame = EpochStore(storage.engine).read_epochs("nothing-here")
    assert list(frame.columns) == list(EPOCH_COLUMNS)
    assert len(frame) == 0
    assert frame["val_dice"].dtype == "float64"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({field: 1.0 for field in EPOCH_FIELDS if field != "val_iou"}, r"missing fields \['val_iou'\]"),
        (epoch_record(1, 1.0) | {"dice": 1.0}, r"unknown fields \['dice'\]"),
        (epoch_record(1, 1.0) | {"epoch": 1.5}, "whole number but got 1.5"),
    ],
)
def test_bad_epoch_record(record: dict[str, float], message: str, tmp_path: Path) -> None:
    storage = open_storage(StoreLocation.parse(None, directory=tmp_path))
    with pytest.raises(StoreError, match=message):
        EpochStore(storage.engine).record_epoch("s", 1, 0, record)


# ---- heartbeat -----------------------------------------------------------------------------------


def beat_at(storage: optuna.storages.RDBStorage, trial_id: int) -> dt.datetime | None:
    with storage.engine.connect() as connection:
        return connection.execute(
            sa.select(HEARTBEATS.c.beat_at).where(HEARTBEATS.c.trial_id == trial_id)
        ).scalar()


def test_heartbeat_registers_worker_and_beats(storage: optuna.storages.RDBStorage) -> None:
    trial = optuna.create_study(storage=storage, study_name="beats").ask()
    with Heartbeat(storage, "beats", trial._trial_id, interval=0.05) as heartbeat:
        first = beat_at(storage, trial._trial_id)
        wait_for(lambda: heartbeat.beats >= 3, what="three heartbeats")
        later = beat_at(storage, trial._trial_id)
        thread_names = {thread.name for thread in threading.enumerate()}
    assert first is not None and later is not None and later > first
    assert f"heartbeat-trial-{trial._trial_id}" in thread_names
    assert f"heartbeat-trial-{trial._trial_id}" not in {thread.name for thread in threading.enumerate()}
    identity = worker_identity()
    attrs = storage.get_trial_user_attrs(trial._trial_id)
    assert trial_worker(attrs) == identity


def test_failed_beat_is_logged_and_beating_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    storage = open_storage(StoreLocation.parse(None, directory=tmp_path))
    trial = optuna.create_study(storage=storage, study_name="flaky").ask()
    heartbeat = Heartbeat(storage, "flaky", trial._trial_id, interval=0.05)
    with heartbeat:
        real_beat, failures = heartbeat._beat, []

        def beat_failing_once() -> None:
            if not failures:
                failures.append(1)
                raise sa.exc.OperationalError("UPDATE", {}, Exception("server closed the connection"))
            real_beat()

        heartbeat._beat = beat_failing_once  # type: ignore[method-assign]
        beats_before = heartbeat.beats
        wait_for(lambda: heartbeat.beats >= beats_before + 2, what="beats after the failure")
    assert failures == [1]
    assert f"heartbeat of trial {trial._trial_id} failed" in caplog.text
    assert "server closed the connection" in caplog.text


@pytest.mark.parametrize("interval", [0, -1.0, float("nan")])
def test_heartbeat_interval_must_be_positive(interval: float, tmp_path: Path) -> None:
    storage = open_storage(StoreLocation.parse(None, directory=tmp_path))
    with pytest.raises(ConfigError, match="interval must be > 0"):
        Heartbeat(storage, "s", 1, interval=interval)


# ---- reaping -------------------------------------------------------------------------------------

DEAD_WORKER = """
import sys, time, optuna
from search.store.epochs import EpochStore
from search.store.heartbeat import Heartbeat
from search.store.engine import open_storage
from unet.history import EPOCH_FIELDS
url, name = sys.argv[1:3]
storage = open_storage(url)
trial = optuna.load_study(study_name=name, storage=storage).ask()
Heartbeat(storage, name, trial._trial_id, interval=0.2).__enter__()
for epoch in (1, 2):
    record = {field: 0.5 for field in EPOCH_FIELDS} | {"epoch": epoch}
    EpochStore(storage.engine).record_epoch(name, trial._trial_id, trial.number, record)
print(trial.number, flush=True)
time.sleep(600)
"""


def test_reap_killed_worker(storage: optuna.storages.RDBStorage, storage_url: str) -> None:
    study = optuna.create_study(storage=storage, study_name="killed")
    worker = run_python(DEAD_WORKER, storage_url, "killed")
    try:
        assert worker.stdout is not None
        ready, _, _ = select.select([worker.stdout], [], [], 120)  # a bound against a hung worker
        line = worker.stdout.readline() if ready else ""
    finally:
        worker.send_signal(signal.SIGKILL)
        _, stderr = worker.communicate()
    assert line.strip(), f"worker did not start: {stderr}"
    live = study.ask()  # a RUNNING trial with no worker yet, started just now: not lost

    assert reap_lost_trials(storage, "killed") == [int(line)]
    assert reap_lost_trials(storage, "killed") == []  # already failed

    trial = storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, int(line)))
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["stop_reason"] == "worker_lost"
    assert trial.user_attrs["stop_epoch"] == 2
    detail = trial.user_attrs["stop_detail"]
    assert (detail["host"], detail["pid"], detail["cause"]) == (
        socket.gethostname(),
        worker.pid,
        "process gone",
    )
    assert detail["last_beat_age_s"] >= 0
    assert storage.get_trial(live._trial_id).state == TrialState.RUNNING


def test_live_local_worker_is_never_reaped(storage: optuna.storages.RDBStorage) -> None:
    study = optuna.create_study(storage=storage, study_name="alive")
    trial = study.ask()
    with Heartbeat(storage, "alive", trial._trial_id, interval=60):
        tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        assert reap_lost_trials(storage, "alive", now=tomorrow) == []
    assert storage.get_trial(trial._trial_id).state == TrialState.RUNNING


def test_reused_pid_is_reaped(tmp_path: Path) -> None:
    storage = open_storage(StoreLocation.parse(None, directory=tmp_path))
    study = optuna.create_study(storage=storage, study_name="reused")
    trial = study.ask()
    # Our own pid, but recorded with a start time it never had: the pid now belongs to another process.
    own_start = process_start_time(os.getpid())
    assert own_start is not None
    trial.set_user_attr("worker_host", socket.gethostname())
    trial.set_user_attr("worker_pid", os.getpid())
    trial.set_user_attr("worker_started", own_start - 1000.0)

    assert reap_lost_trials(storage, "reused") == [trial.number]
    assert (
        storage.get_trial(trial._trial_id).user_attrs["stop_detail"]["cause"]
        == "pid reused by another process"
    )


@pytest.mark.parametrize(
    ("with_heartbeat", "silent_s", "cause"),
    [
        (True, 59.0, None),
        (True, 61.0, "heartbeat stale"),
        (False, 59.0, None),
        (False, 61.0, "no heartbeat since start"),
    ],
)
def test_silent_remote_worker_is_reaped_after_grace(
    with_heartbeat: bool,
    silent_s: float,
    cause: str | None,
    storage: optuna.storages.RDBStorage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    study = optuna.create_study(storage=storage, study_name="remote")
    trial = study.ask()
    if with_heartbeat:
        remote = WorkerIdentity(host="gpu-node-7.example", pid=4242, started=1.0)
        monkeypatch.setattr("search.store.heartbeat.worker_identity", lambda: remote)
        with Heartbeat(storage, "remote", trial._trial_id, interval=60):
            pass
        last_sign = beat_at(storage, trial._trial_id).replace(tzinfo=dt.UTC)
    else:
        last_sign = storage.get_trial(trial._trial_id).datetime_start.astimezone(dt.UTC)

    reaped = reap_lost_trials(
        storage, "remote", grace_seconds=60, now=last_sign + dt.timedelta(seconds=silent_s)
    )

    frozen = storage.get_trial(trial._trial_id)
    if cause is None:
        assert (reaped, frozen.state) == ([], TrialState.RUNNING)
        return
    assert (reaped, frozen.state) == ([trial.number], TrialState.FAIL)
    detail = frozen.user_attrs["stop_detail"]
    assert detail["cause"] == cause
    assert frozen.user_attrs["stop_epoch"] == 0
    if with_heartbeat:
        assert (detail["host"], detail["pid"], detail["last_beat_age_s"]) == (
            "gpu-node-7.example",
            4242,
            61.0,
        )


def test_trial_finished_during_reap_is_left_alone(storage: optuna.storages.RDBStorage) -> None:
    study = optuna.create_study(storage=storage, study_name="race")
    trial = study.ask()
    get_all_trials = storage.get_all_trials

    def listing_then_worker_finishes(*args: object, **kwargs: object) -> list[optuna.trial.FrozenTrial]:
        running = get_all_trials(*args, **kwargs)  # type: ignore[arg-type]
        study.tell(trial, 1.0)  # the worker was only slow: it reports just after the reaper looked
        return running

    storage.get_all_trials = listing_then_worker_finishes  # type: ignore[method-assign]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)

    assert reap_lost_trials(storage, "race", now=later) == []
    frozen = get_all_trials(study._study_id)[0]
    assert frozen.state == TrialState.COMPLETE
    assert "stop_reason" not in frozen.user_attrs


def test_reap_unknown_study(tmp_path: Path) -> None:
    storage = open_storage(StoreLocation.parse(None, directory=tmp_path))
    with pytest.raises(StoreError, match="no study named 'nope'"):
        reap_lost_trials(storage, "nope")


# ---- several worker processes --------------------------------------------------------------------

HAMMER_WORKER = """
import sys, optuna
from search.store.epochs import EpochStore
from search.store.heartbeat import Heartbeat
from search.store.reaper import reap_lost_trials
from search.store.engine import open_storage
from unet.history import EPOCH_FIELDS
url, name, n_trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = open_storage(url)
study = optuna.load_study(study_name=name, storage=storage)
epochs = EpochStore(storage.engine)
for _ in range(n_trials):
    trial = study.ask()
    x = trial.suggest_float("x", 0.0, 1.0)
    with Heartbeat(storage, name, trial._trial_id, interval=0.05):
        for epoch in (1, 2, 3):
            record = {field: x for field in EPOCH_FIELDS} | {"epoch": epoch}
            epochs.record_epoch(name, trial._trial_id, trial.number, record)
            trial.report(x, epoch)
        reap_lost_trials(storage, name)
        study.tell(trial, x)
"""


def test_four_local_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    """Four local worker processes on one SQLite study with no storage error."""
    url = StoreLocation.parse(None, directory=tmp_path).secret_url()
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name="shared")
    workers = [run_python(HAMMER_WORKER, url, "shared", "6") for _ in range(4)]
    outputs = [worker.communicate(timeout=300) for worker in workers]

    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
        assert "database is locked" not in stderr
        assert "heartbeat of trial" not in stderr, stderr
    trials = storage.get_all_trials(storage.get_study_id_from_name("shared"))
    assert sorted(t.number for t in trials) == list(range(24))
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    frame = EpochStore(storage.engine).read_epochs("shared")
    assert len(frame) == 24 * 3
    by_trial = frame.groupby("trial_number")["train_loss"].first()
    expected = pd.Series({t.number: t.params["x"] for t in trials}).sort_index()
    assert by_trial.tolist() == expected.tolist()
