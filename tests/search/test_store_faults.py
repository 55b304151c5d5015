"""The service's commands on stores that fail under them: read-only media, a file deleted or truncated."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from search.run import EXIT_STORE_LOST, main
from tests.search.test_run import REPO, epochs_recorded, run_cli, study_file, trials, wait_for

NOBODY = 65534


def as_reader(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ...`` as a user who may not write the store (root may write anything)."""
    return subprocess.run(
        reader_command(args), env=reader_env(home), capture_output=True, text=True, timeout=600
    )


def reader_command(args: list[str]) -> list[str]:
    prefix = (
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if os.geteuid() == 0 else []
    )
    return [*prefix, sys.executable, *args]


def check_reader_reaches_checkout() -> None:
    """Fail in one line when the reader cannot run this Python on this checkout (e.g. a 0700 parent)."""
    if os.geteuid() != 0:
        return
    probe = subprocess.run(
        reader_command(["-c", "import search"]), env=reader_env(Path("/")), capture_output=True, text=True
    )
    if probe.returncode != 0:
        pytest.fail(
            f"user nobody cannot run {sys.executable} on {REPO} (a parent folder closed to others?): "
            f"put the checkout where others may enter (chmod o+x on its parents) to run the read-only tests",
            pytrace=False,
        )


def reader_env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(home), "MPLCONFIGDIR": str(home)}


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store (WAL mode, checkpointed, as a run leaves it) holding the finished unet-smoke study."""
    db = tmp_path_factory.mktemp("finished") / "unet-search.db"
    assert main(["--study", "unet-smoke", "--storage", f"sqlite:///{db}", "--backend", "local"]) == 0
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    return db


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="unet-search-ro-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for sub in [path, *path.rglob("*")]:
            sub.chmod(0o755 if sub.is_dir() else 0o644)
        shutil.rmtree(path)


def read_only_copy(finished: Path, shared: Path, what: str) -> tuple[str, Path]:
    """Copy the store into ``shared``, make the file (and for "directory" its folder) read-only."""
    check_reader_reaches_checkout()
    store_dir = shared / "archive"
    store_dir.mkdir()
    db = store_dir / "unet-search.db"
    shutil.copy(finished, db)
    db.chmod(0o444)
    if what == "directory":
        store_dir.chmod(0o555)
    home = shared / "home"
    home.mkdir()
    home.chmod(0o777)
    return f"sqlite:///{db}", home


@pytest.mark.slow
@pytest.mark.parametrize("what", ["directory", "file"])
def test_read_only_store_can_be_read_but_not_run(finished_store: Path, shared_dir: Path, what: str) -> None:
    url, home = read_only_copy(finished_store, shared_dir, what)
    before = finished_store.read_bytes()

    report = as_reader(
        ["-m", "search.report", "--study", "unet-smoke", "--storage", url, "--out", str(home / "r")], home
    )
    assert report.returncode == 0, report.stderr
    assert (home / "r" / "summary.md").is_file() and "3 trials" in report.stdout

    summary = as_reader(
        ["-m", "search.run", "--study", "unet-smoke", "--storage", url, "--backend", "local"], home
    )
    assert summary.returncode == 0, summary.stderr
    assert "Best trial #" in summary.stdout and "Traceback" not in summary.stderr

    more = as_reader(
        [
            "-m",
            "search.run",
            "--study",
            "unet-smoke",
            "--storage",
            url,
            "--n-trials",
            "4",
            "--backend",
            "local",
        ],
        home,
    )
    assert more.returncode == 2
    assert more.stderr.strip().count("\n") == 0 and "read-only" in more.stderr, more.stderr

    if what == "directory":
        assert_dashboard_serves(url, home)
        assert sorted(p.name for p in (shared_dir / "archive").iterdir()) == [
            "unet-search.db"
        ]  # no -wal, -shm
    assert (shared_dir / "archive" / "unet-search.db").read_bytes() == before


def assert_dashboard_serves(url: str, home: Path) -> None:
    server = subprocess.Popen(
        reader_command(["-m", "search.dashboard", "--storage", url, "--port", "0"]),
        env=reader_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 300)  # a bound against a hung server
        line = server.stdout.readline() if ready else ""
        assert "Dashboard of" in line, server.stderr
        address = line.split(" on ", 1)[1].split("/dashboard")[0]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        studies = json.loads(opener.open(f"{address}/api/studies", timeout=60).read())
        assert [s["study_name"] for s in studies["study_summaries"]] == ["unet-smoke"]
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert "Traceback" not in stderr and "read-only" in stderr


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["removed", "truncated", "halved"])
def test_store_deleted_or_truncated_mid_run_exits_3_with_one_line(tmp_path: Path, fault: str) -> None:
    path = study_file(
        tmp_path,
        "vanishing",
        budget={"n_trials": 2, "max_epochs": 30},
        pruning={"plateau": {"warmup_epochs": 30, "patience": 1, "min_delta": 0.0, "divergence_factor": 5.0}},
    )
    db = tmp_path / "s.db"
    proc = run_cli("--study", str(path), "--storage", f"sqlite:///{db}", "--backend", "local", cwd=tmp_path)
    wait_for(lambda: epochs_recorded(db) >= 2, what="the first epochs")
    if fault == "removed":
        db.unlink()
    else:
        os.truncate(db, 0 if fault == "truncated" else db.stat().st_size // 2)
    out, _ = proc.communicate(timeout=300)

    assert proc.returncode == EXIT_STORE_LOST, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and ("deleted" if fault == "removed" else "truncated") in errors[0], out
    assert "WARNING" not in out, out


# Every connection to the database but the caller's own, as an operator (or a failover) would cut them.
OTHER_CONNECTIONS = {
    "postgresql": "SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()",
    "mariadb": "SELECT id FROM information_schema.PROCESSLIST WHERE db = :db AND id <> CONNECTION_ID()",
}
CUT = {"postgresql": "SELECT pg_terminate_backend({id})", "mariadb": "KILL {id}"}


def cut_connections(connection: sa.Connection, backend: str, database: str) -> int:
    """Terminate the other connections to ``database``; return how many there were."""
    ids = connection.execute(sa.text(OTHER_CONNECTIONS[backend]), {"db": database}).scalars().all()
    for other in ids:
        with contextlib.suppress(sa.exc.DBAPIError):  # it may have ended by itself meanwhile
            connection.execute(sa.text(CUT[backend].format(id=int(other))))
    return len(ids)


def stored_epochs(connection: sa.Connection) -> int:
    try:
        return int(connection.execute(sa.text("SELECT count(*) FROM unet_search_epochs")).scalar() or 0)
    except sa.exc.DBAPIError:
        return 0  # not created yet


@pytest.mark.slow
@pytest.mark.db
@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_connections_cut_during_trials_cost_at_most_a_retry(
    backend: str, fresh_database: Callable[[str], AbstractContextManager[str]], tmp_path: Path
) -> None:
    path = study_file(
        tmp_path,
        "cut",
        # Long enough that the 60 cuts below (15 s) fall while trials run (12 epochs once ended after 8).
        budget={"n_trials": 2, "max_epochs": 30},
        pruning={"plateau": {"warmup_epochs": 30, "patience": 1, "min_delta": 0.0, "divergence_factor": 5.0}},
    )
    with fresh_database(backend) as url:
        database = str(sa.make_url(url).database)
        killer = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with killer.connect() as connection:
                proc = run_cli("--study", str(path), "--storage", url, "--backend", "local", cwd=tmp_path)
                wait_for(lambda: stored_epochs(connection) >= 1, what="the first epoch")
                cut = 0
                for _ in range(60):  # as found: 60 times, 0.25 s apart
                    cut += cut_connections(connection, backend, database)
                    time.sleep(0.25)
                out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, out
            assert "Traceback" not in out and "error:" not in out, out
            assert cut >= 10  # the worker's connections really were cut, again and again
            done = trials(url, "cut")
            assert [t.state for t in done] == [TrialState.COMPLETE] * 2  # no retry needed, nothing RUNNING
            with killer.connect() as connection:
                for t in done:
                    epochs = connection.execute(
                        sa.text("SELECT epoch FROM unet_search_epochs WHERE trial_id = :id ORDER BY epoch"),
                        {"id": t._trial_id},
                    ).scalars()
                    assert list(epochs) == sorted(t.intermediate_values) == list(range(1, 31))
        finally:
            killer.dispose()


@contextlib.contextmanager
def scratch_login(admin: sa.Engine, backend: str, url: str) -> Iterator[str]:
    """Yield ``url`` as the run should use it: on MariaDB, as a user of its own (that can be locked out)."""
    if backend != "mariadb":
        yield url
        return
    parsed = sa.make_url(url)
    user, password = f"outage_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"))
        connection.execute(sa.text(f"GRANT ALL ON {parsed.database}.* TO '{user}'@'%'"))
    try:
        yield parsed.set(username=user, password=password).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'%'"))


@contextlib.contextmanager
def outage(admin: sa.Engine, backend: str, url: str) -> Iterator[None]:
    """Within the block the run's database refuses every connection, and the open ones are cut.

    PostgreSQL: the database stops accepting connections; MariaDB: the run's user is locked. Restored on
    leaving the block, whatever happened in it.
    """
    parsed = sa.make_url(url)
    lock, unlock, who = {
        "postgresql": (
            f"ALTER DATABASE {parsed.database} ALLOW_CONNECTIONS false",
            f"ALTER DATABASE {parsed.database} ALLOW_CONNECTIONS true",
            "SELECT pid FROM pg_stat_activity WHERE datname = :name",
        ),
        "mariadb": (
            f"ALTER USER '{parsed.username}'@'%' ACCOUNT LOCK",
            f"ALTER USER '{parsed.username}'@'%' ACCOUNT UNLOCK",
            "SELECT id FROM information_schema.PROCESSLIST WHERE user = :name",
        ),
    }[backend]
    name = parsed.database if backend == "postgresql" else parsed.username
    with admin.connect() as connection:
        connection.execute(sa.text(lock))
        try:
            for other in connection.execute(sa.text(who), {"name": name}).scalars().all():
                with contextlib.suppress(sa.exc.DBAPIError):  # it may have ended by itself meanwhile
                    connection.execute(sa.text(CUT[backend].format(id=int(other))))
            yield
        finally:
            connection.execute(sa.text(unlock))


@pytest.mark.slow
@pytest.mark.db
@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_store_unreachable_past_the_retry_window_exits_3_then_resumes(
    backend: str,
    fresh_database: Callable[[str], AbstractContextManager[str]],
    server_admin: Callable[[str], sa.Engine],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    window = 2  # execution.store_outage_s: the retry window, short for the test
    path = study_file(
        tmp_path,
        "outage",
        budget={"n_trials": 1, "max_epochs": 20},
        pruning={"plateau": {"warmup_epochs": 50, "patience": 1, "min_delta": 0.0, "divergence_factor": 5.0}},
        execution={"max_retries": 1, "store_outage_s": window},
    )
    admin = server_admin(backend)
    with fresh_database(backend) as database_url, scratch_login(admin, backend, database_url) as url:
        command = ("--study", str(path), "--storage", url, "--backend", "local")
        proc = run_cli(*command, cwd=tmp_path)
        watcher = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
        wait_for(lambda: stored_rows(watcher, "unet_search_epochs") >= 2, what="the first epochs")
        watcher.dispose()
        with outage(admin, backend, url):
            out, _ = proc.communicate(timeout=120)  # within the outage: it lasts until the run has ended

        assert proc.returncode == EXIT_STORE_LOST, out
        assert "Traceback" not in out and "WARNING" not in out, out
        errors = [line for line in out.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, out
        shown = sa.make_url(url).render_as_string(hide_password=True)
        assert f"the study store {shown} stayed unreachable for {window} s" in errors[0]
        assert "run the same command again to resume" in errors[0]
        password = sa.make_url(url).password
        assert password is None or str(password) not in out
        # Nothing half-written: the trial is RUNNING, left for the reaper, with whole epoch rows 1..n. An
        # epoch's row and its Optuna report are two writes, so the outage may fall between them: the last
        # row may lack its report (seen on PostgreSQL in CI), never the other way round.
        (cut,) = trials(url, "outage")
        assert cut.state == TrialState.RUNNING
        stored, reported = epochs_of(url, cut._trial_id), sorted(cut.intermediate_values)
        assert stored == list(range(1, len(stored) + 1)) and len(stored) >= 2
        assert reported == stored or reported == stored[:-1], (stored, reported)

        assert main(list(command)) == 0  # the same command again, in this process (no second start-up)
        out, err = capfd.readouterr()
        assert "Traceback" not in out + err and "error:" not in out + err, out + err
        lost, retry = trials(url, "outage")  # exactly one retry, nothing RUNNING
        assert lost.state == TrialState.FAIL and lost.user_attrs["stop_reason"] == "worker_lost"
        assert lost.user_attrs["stop_epoch"] == max(epochs_of(url, lost._trial_id))
        assert retry.state == TrialState.COMPLETE and retry.user_attrs["retry_of"] == lost.number
        assert retry.params == lost.params
        assert epochs_of(url, retry._trial_id) == sorted(retry.intermediate_values) == list(range(1, 21))


def stored_rows(engine: sa.Engine, table: str) -> int:
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() or 0)
    except sa.exc.DBAPIError:
        return 0  # not created yet


def epochs_of(url: str, trial_id: int) -> list[int]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            query = sa.text("SELECT epoch FROM unet_search_epochs WHERE trial_id = :id ORDER BY epoch")
            return list(connection.execute(query, {"id": trial_id}).scalars())
    finally:
        engine.dispose()
