"""python -m search.dashboard in a real browser (headless Chromium), and why it cannot break a study.

The browser tests serve a store with ``python -m search.dashboard`` and open it with Playwright in
Debian's Chromium; screenshots are kept in ``test-artifacts/``. The running-study test reproduces the
situation of optuna-dashboard#545 (a dashboard reading a SQLite study while it runs) and checks that the
study finishes unharmed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from test_report import SMALL, Planned, craft_study
from test_run import study_file

from search.dashboard import is_loopback, main
from search.execution.study import count_trials
from search.store.engine import open_storage

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path(os.environ.get("UNET_SEARCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# A bound on waits for pages and processes, not a timing assertion.
WAIT_MS = 30_000
# A bound on waits for a study's trials, long enough for a heavily loaded 2-core machine.
STUDY_WAIT_S = 600.0
# Talk to 127.0.0.1 directly even where a proxy is configured.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright; fails (not skips) when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'", pytrace=False)
    if not CHROMIUM.exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: apt-get install chromium, or set UNET_SEARCH_CHROMIUM", pytrace=False
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def served(url: str, *args: str) -> Iterator[str]:
    """Run ``python -m search.dashboard`` on ``url`` on a free port; yield the address it printed.

    On exit the server gets SIGTERM and must stop with status 0 and no traceback.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "search.dashboard", "--storage", url, "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], WAIT_MS / 1000)
        line = process.stdout.readline() if ready else ""  # type: ignore[union-attr]
        match = re.search(r" on (http://127\.0\.0\.1:\d+\S*) \(Ctrl-C stops it\)", line)
        if match is None:
            process.kill()
            pytest.fail(f"dashboard did not start: {line!r} {process.communicate()[1]!r}")
        yield match.group(1)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=WAIT_MS / 1000)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
    assert process.returncode == 0 and "Traceback" not in err, err


def root(address: str) -> str:
    return re.sub(r"(http://[^/]+).*", r"\1", address)


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.mark.slow
def test_finished_study_in_the_browser(browser: Any, storage_url: str, backend: str) -> None:
    from playwright.sync_api import expect

    storage = open_storage(storage_url)
    craft_study(storage, "finished", SMALL[:4])  # complete, pruned (diverged), pruned (plateau), failed
    storage.engine.dispose()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        with served(storage_url, "--study", "finished") as study_page:
            page.goto(f"{root(study_page)}/dashboard", timeout=WAIT_MS)
            expect(page.get_by_text("finished", exact=False).first).to_be_visible(timeout=WAIT_MS)
            page.goto(f"{study_page}/trials?numbers=2", timeout=WAIT_MS)
            expect(page.get_by_text("4 Trials", exact=True)).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_text("stop_reason plateau", exact=True)).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_text("diagnosis stalled", exact=True)).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_text("Pruned", exact=True).first).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_text("Complete", exact=True).first).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_text("Intermediate Values", exact=True)).to_be_visible(timeout=WAIT_MS)
            screenshot(page, f"dashboard-finished-{backend}.png")
    finally:
        page.close()


@pytest.mark.slow
def test_pruned_and_diverged_trials_show_their_labels(browser: Any, tmp_path: Path) -> None:
    """Issue 20: under successive halving the trials end at the first rung; the dashboard shows each
    one's diagnosis (too_early, or diverged for a pruned trial whose loss exploded) beside its stop."""
    from playwright.sync_api import expect

    url = f"sqlite:///{tmp_path / 'sh.db'}"
    storage = open_storage(url)
    pruned = optuna.trial.TrialState.PRUNED
    plan = [
        Planned(0.001, "batch", optuna.trial.TrialState.COMPLETE, 4, diagnosis="healthy"),
        Planned(0.0002, "instance", pruned, 1, "underperforming", "too_early"),
        Planned(0.5, "batch", pruned, 1, "underperforming", "diverged"),
    ]
    craft_study(storage, "halving", plan)
    storage.engine.dispose()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        with served(url, "--study", "halving") as study_page:
            for number, label in ((1, "too_early"), (2, "diverged")):
                page.goto(f"{study_page}/trials?numbers={number}", timeout=WAIT_MS)
                expect(page.get_by_text("3 Trials", exact=True)).to_be_visible(timeout=WAIT_MS)
                stop = page.get_by_text("stop_reason underperforming", exact=True)
                expect(stop).to_be_visible(timeout=WAIT_MS)
                expect(page.get_by_text(f"diagnosis {label}", exact=True)).to_be_visible(timeout=WAIT_MS)
                screenshot(page, f"dashboard-halving-{label}.png")
    finally:
        page.close()


@pytest.mark.slow
def test_dashboard_and_report_during_a_running_sqlite_study(
    browser: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """optuna-dashboard#545: reading a running SQLite study must not break it.

    The study runs through the service (``open_study_run`` and ``run_study``, as ``search.run`` runs it)
    in a thread, with an epoch callback that holds the first trial after the baseline once its first
    epoch is stored, until the test has read the study: the pages, the API and the report read a trial
    known to be RUNNING, however fast training is. The API is polled until the study has ended, so its
    reads also meet the study's writes.
    """
    from playwright.sync_api import expect

    from search.report.cli import main as report
    from search.service import open_study_run, run_study
    from search.spec.schema import load_spec
    from search.store.location import StoreLocation

    caplog.set_level(logging.WARNING)
    n_trials = 2  # the baseline, then the held trial, which writes its last epochs after the reads
    spec = study_file(
        tmp_path,
        "unet-live",
        budget={"n_trials": n_trials, "timeout": None, "max_epochs": 2},
        # No pruning rule ends a trial before the test has read it.
        pruning={
            "plateau": {"warmup_epochs": 2, "patience": 3, "min_delta": 0.0, "divergence_factor": 1e6},
            "cross_trial": {"rule": "none", "warmup_epochs": 1, "min_trials": 1},
        },
    )
    url = f"sqlite:///{tmp_path / 'live.db'}"
    open_storage(url).engine.dispose()  # the store exists before the dashboard opens it
    held, release = threading.Event(), threading.Event()
    held_trial: list[int] = []

    def hold(trial: optuna.Trial, record: Any) -> None:
        if trial.number >= 1 and not held_trial:  # after record_epoch: the epoch row is stored
            held_trial.append(trial.number)
            held.set()
            release.wait(STUDY_WAIT_S)

    ended: dict[str, Any] = {}

    def study() -> None:
        try:
            study_run = open_study_run(load_spec(str(spec)), StoreLocation.parse(url))
            try:
                ended["counts"] = run_study(study_run, backend="local", on_epoch=hold)
            finally:
                study_run.storage.remove_session()
                study_run.storage.engine.dispose()
        except BaseException as e:  # the test's assertions report it
            ended["error"] = e
            held.set()  # a study that failed before the hold ends the wait for it

    # The study opens (data, store) while the dashboard starts: nothing runs past the hold before the
    # test has read the study.
    runner = threading.Thread(target=study, daemon=True)
    runner.start()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        with served(url) as address:
            poller = ApiPoller(root(address))
            poller.start()
            try:
                held.wait(STUDY_WAIT_S)
                assert held_trial, f"no trial after the baseline stored an epoch: {ended}"
                number = held_trial[0]
                page.goto(f"{root(address)}/dashboard/studies/1/trials", timeout=WAIT_MS)
                expect(page.get_by_text(f"{number + 1} Trials", exact=True)).to_be_visible(timeout=WAIT_MS)
                expect(page.get_by_text("Running", exact=True).first).to_be_visible(timeout=WAIT_MS)
                screenshot(page, "dashboard-running.png")
                deadline = time.monotonic() + WAIT_MS / 1000
                while not poller.saw_running and time.monotonic() < deadline:
                    time.sleep(0.05)
                # The report reads the study as it runs, next to the dashboard.
                out = tmp_path / "report"
                assert report(["--study", "unet-live", "--storage", url, "--out", str(out)]) == 0
                running = optuna.load_study(study_name="unet-live", storage=url).trials[number]
                assert running.state == optuna.trial.TrialState.RUNNING  # still held: the reads overlapped it
            finally:
                release.set()
                runner.join(STUDY_WAIT_S)
                poller.stop()
            page.goto(f"{root(address)}/dashboard/studies/1/trials", timeout=WAIT_MS)
            expect(page.get_by_text(f"{n_trials} Trials", exact=True)).to_be_visible(timeout=WAIT_MS)
            screenshot(page, "dashboard-after-run.png")
    finally:  # whatever failed, the study is let go and ends before the test does
        release.set()
        runner.join(STUDY_WAIT_S)
        page.close()
    assert not runner.is_alive() and "error" not in ended, ended
    for symptom in ("database is locked", "OperationalError", "Traceback"):
        assert symptom not in caplog.text
    assert poller.errors == [] and poller.responses > 0
    assert poller.saw_running  # the dashboard's API did read the study while it ran
    counts = count_trials(optuna.load_study(study_name="unet-live", storage=url))
    assert counts.finished == n_trials and counts.failed == 0 and counts.running == 0


class ApiPoller(threading.Thread):
    """Reads the dashboard's study list and study detail as fast as it answers, as its pages do."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.responses = 0
        self.errors: list[str] = []
        self.saw_running = False
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                studies = json.loads(_HTTP.open(f"{self.base}/api/studies", timeout=30).read())
                for study in studies["study_summaries"]:
                    detail = json.loads(
                        _HTTP.open(f"{self.base}/api/studies/{study['study_id']}", timeout=30).read()
                    )
                    self.saw_running |= any(t["state"] == "Running" for t in detail["trials"])
                self.responses += 1
                self._halt.wait(0.05)  # leave the CPU to the study's training between rounds
            except Exception as e:  # every failure is a finding of the test, reported at its end
                self.errors.append(f"{type(e).__name__}: {e}")
                self._halt.wait(0.5)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=WAIT_MS / 1000)


@pytest.mark.parametrize(("journal_mode", "write_blocked"), [("wal", False), ("delete", True)])
def test_open_read_does_not_block_a_write_in_wal_mode(
    tmp_path: Path, journal_mode: str, write_blocked: bool
) -> None:
    """The mechanism behind optuna-dashboard#545, and why the store's WAL mode avoids it.

    A dashboard page is served inside a read transaction. In SQLite's default rollback-journal mode
    that read keeps the study's worker from committing, and the worker's write fails with "database is
    locked" once its lock wait runs out. In WAL mode, which ``open_storage`` sets, the write goes
    through while the read is open.
    """
    path = tmp_path / "store.db"
    storage = open_storage(f"sqlite:///{path}")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    storage.engine.dispose()
    with sqlite3.connect(path) as plain:
        mode = plain.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"  # what open_storage leaves on the file
        if journal_mode != "wal":
            plain.execute(f"PRAGMA journal_mode={journal_mode}")
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM trials").fetchone()[0] == 1  # the read is open now
    # A short lock wait instead of the store's minute keeps the blocked case quick.
    writer = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.2})
    try:
        with writer.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (:t, 'k', '1')"
                ),
                {"t": trial._trial_id},
            )
        blocked = False
    except sa.exc.OperationalError as e:
        assert "database is locked" in str(e)
        blocked = True
    finally:
        writer.dispose()
        reader.execute("ROLLBACK")
        reader.close()
    assert blocked == write_blocked


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("192.168.1.5", False), ("example.org", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-store", "no study store at 'sqlite:///{tmp}/none.db': run python -m search.run first"),
        ("unknown-study", "no study named 'other' in sqlite:///{tmp}/store.db: choose one of finished"),
        ("port-in-use", "cannot listen on 127.0.0.1:{port}: "),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, case: str, message: str) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    storage = open_storage(url)
    craft_study(storage, "finished", SMALL[:1])
    storage.engine.dispose()
    args = ["--storage", url]
    if case == "missing-store":
        args = ["--storage", f"sqlite:///{tmp_path / 'none.db'}"]
    elif case == "unknown-study":
        args += ["--study", "other"]
    with _listening_socket() as port:
        if case == "port-in-use":
            args += ["--port", str(port)]
        assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(tmp=tmp_path, port=port)) and err.count("\n") == 1


@contextmanager
def _listening_socket() -> Iterator[int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]
