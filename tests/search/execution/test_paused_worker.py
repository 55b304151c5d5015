"""The local backend's faults: a worker paused past the heartbeat grace wakes up to a reaped trial."""

from __future__ import annotations

import datetime as dt
import signal
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.execution.study import enqueue_retry
from search.store.engine import open_storage
from search.store.reaper import reap_lost_trials
from tests.search.test_run import epochs_recorded, run_cli, study_file, trials, wait_for

GRACE_S = 2.0  # the reaper's grace in this test; the service's is a minute


def last_beat_age_s(db: Path) -> float:
    with sqlite3.connect(db, timeout=5) as connection:
        (beat,) = connection.execute("SELECT max(beat_at) FROM unet_search_heartbeats").fetchone()
    beat_at = dt.datetime.fromisoformat(beat).replace(tzinfo=dt.UTC)
    return (dt.datetime.now(dt.UTC) - beat_at).total_seconds()


def epochs_of(db: Path, trial_id: int) -> list[int]:
    with sqlite3.connect(db, timeout=5) as connection:
        rows = connection.execute(
            "SELECT epoch FROM unet_search_epochs WHERE trial_id = ? ORDER BY epoch", (trial_id,)
        )
        return [epoch for (epoch,) in rows]


@pytest.mark.slow
def test_worker_paused_past_the_grace_drops_its_reaped_trial_and_goes_on(tmp_path: Path) -> None:
    path = study_file(
        tmp_path,
        "paused",
        # Long enough that the pause falls within trial 0 (with 8 epochs it ended before, on an idle machine).
        budget={"n_trials": 2, "max_epochs": 30},
        pruning={"plateau": {"warmup_epochs": 30, "patience": 1, "min_delta": 0.0, "divergence_factor": 5.0}},
        execution={"concurrency": 1, "cpus_per_trial": 1, "gpus_per_trial": 0, "max_retries": 1},
    )
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    proc = run_cli("--study", str(path), "--storage", url, "--backend", "local", cwd=tmp_path)
    try:
        wait_for(lambda: epochs_recorded(db) >= 2, what="the first epochs")
        proc.send_signal(signal.SIGSTOP)  # as found: a pause longer than the heartbeat grace
        wait_for(lambda: last_beat_age_s(db) > GRACE_S, what="the beats to go stale")
        storage = open_storage(url)
        study = optuna.load_study(study_name="paused", storage=storage)
        assert reap_lost_trials(storage, "paused", grace_seconds=GRACE_S) == [0]
        enqueue_retry(study, study.get_trials(deepcopy=False)[0], max_retries=1)  # as the service does
        stop_epoch = storage.get_trial(study.get_trials(deepcopy=False)[0]._trial_id).user_attrs["stop_epoch"]
    finally:
        proc.send_signal(signal.SIGCONT)
    out, _ = proc.communicate(timeout=600)

    assert proc.returncode == 0, out
    assert "Traceback" not in out and "UpdateFinishedTrialError" not in out, out
    assert [line for line in out.splitlines() if "taken over" in line] == [
        "WARNING search.execution.local: trial 0 was taken over while this worker was paused (reaped as "
        "lost, its retry queued): dropped here, going on with the next trial"
    ]
    done = trials(url, "paused")
    lost = done[0]
    assert lost.state == TrialState.FAIL and lost.user_attrs["stop_reason"] == "worker_lost"
    assert lost.user_attrs["stop_detail"]["cause"] == "process stopped past the grace period"
    assert epochs_of(db, lost._trial_id) == list(range(1, stop_epoch + 1))  # nothing written after
    assert max(lost.intermediate_values) == stop_epoch
    retries = [t for t in done if t.user_attrs.get("retry_of") == 0]
    assert len(retries) == 1 and retries[0].params == lost.params  # retried once
    counted = [t for t in done if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 2 and len(done) == 3  # the exact count, nothing RUNNING
