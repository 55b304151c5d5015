"""The local backend on a real SQLite store: the budget, lost trials reaped and retried, interrupts."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.execution.data import load_study_data
from search.execution.local import run_local
from search.execution.objective import TrialContext
from search.execution.study import open_study
from search.outcome import STOP_REASON
from search.spec.schema import StudySpec, load_spec
from search.store.engine import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def smoke(n_trials: int, max_retries: int) -> StudySpec:
    data = load_spec("unet-smoke").to_dict()
    data.pop("source")
    data["budget"] = {"n_trials": n_trials, "max_epochs": 1}
    data["execution"]["max_retries"] = max_retries
    return StudySpec.from_dict(data)


@pytest.fixture
def opened(tmp_path: Path):
    """``opened(n_trials)``: the smoke study (1 epoch per trial) in a fresh SQLite store, and its context."""
    storages = []

    def open_(n_trials: int, max_retries: int = 0, **context) -> tuple[optuna.Study, TrialContext]:
        spec = smoke(n_trials, max_retries)
        storage = open_storage(f"sqlite:///{tmp_path / 'local.db'}")
        storages.append(storage)
        study, _ = open_study(storage, spec)
        return study, TrialContext(spec=spec, storage=storage, data=load_study_data(spec), **context)

    yield open_
    for storage in storages:
        storage.engine.dispose()


@pytest.mark.slow
def test_runs_until_the_budget_and_reports_every_trial(opened) -> None:
    study, ctx = opened(2)
    seen = []
    counts = run_local(
        study, ctx, n_trials=2, on_trial=lambda t, outcome, c: seen.append((t.number, c.finished))
    )
    assert counts.finished == 2 and counts.running == 0
    assert seen == [(0, 1), (1, 2)]
    assert study.trials[0].params == dict(ctx.spec.baselines[0])  # the baseline first
    # Resuming a finished study runs nothing more.
    assert run_local(study, ctx, n_trials=2).finished == 2 and len(study.trials) == 2


def test_a_lost_trial_is_reaped_retried_and_not_counted(opened) -> None:
    study, ctx = opened(1, max_retries=1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lost = study.ask()  # the baseline, as a worker that died at once would have left it
    lost.set_user_attr("worker_host", socket.gethostname())
    lost.set_user_attr("worker_pid", dead.pid)
    counts = run_local(study, ctx, n_trials=1)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs[STOP_REASON] == "worker_lost"
    # It died before drawing its parameters: the retry runs those it was enqueued with.
    assert trials[1].params == trials[0].system_attrs["fixed_params"] == dict(ctx.spec.baselines[0])
    assert trials[1].user_attrs["retry_of"] == 0
    assert (counts.finished, counts.retryable) == (1, 1)


def test_an_interrupt_fails_the_trial_and_enqueues_it_once_more(opened) -> None:
    def interrupt(trial: optuna.Trial, record: object) -> None:
        raise KeyboardInterrupt

    study, ctx = opened(1, on_epoch=interrupt)
    assert ctx.spec.execution.max_retries == 0  # an interrupt still gets its retry (max_retries + 1)
    with pytest.raises(KeyboardInterrupt):
        run_local(study, ctx, n_trials=1)
    first, retry = study.get_trials()
    assert (first.state, first.user_attrs[STOP_REASON]) == (TrialState.FAIL, "interrupted")
    assert (retry.state, retry.user_attrs["retry"]) == (TrialState.WAITING, 1)
    assert retry.system_attrs["fixed_params"] == first.params
