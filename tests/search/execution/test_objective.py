"""One trial start to end on a real SQLite store: what ``execute_trial`` returns and leaves on the trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from search.execution import objective
from search.execution.data import load_study_data
from search.execution.objective import TrialContext, execute_trial
from search.execution.study import open_study
from search.outcome import BEST_EPOCH, DIAGNOSIS, STOP_DETAIL, STOP_EPOCH, STOP_MESSAGE, STOP_REASON
from search.spec.schema import StudySpec, load_spec
from search.store.engine import open_storage
from unet.errors import ConfigError

optuna.logging.set_verbosity(optuna.logging.WARNING)


def smoke(plateau: dict[str, Any]) -> StudySpec:
    data = load_spec("unet-smoke").to_dict()
    data.pop("source")
    data["pruning"] = {"plateau": plateau, "cross_trial": {"rule": "none"}}
    data["baselines"] = []
    return StudySpec.from_dict(data)


NEVER = {"warmup_epochs": 100, "patience": 1, "min_delta": 0.0}
AT_ONCE = {"warmup_epochs": 0, "patience": 1, "min_delta": 0.99}  # no epoch improves 99 %: plateau at 2


@pytest.fixture
def run_one(tmp_path: Path):
    """``run_one(plateau)``: execute one trial of the smoke study; returns (outcome, frozen trial, epochs)."""
    storages = []

    def run(plateau: dict[str, Any]):
        spec = smoke(plateau)
        storage = open_storage(f"sqlite:///{tmp_path / 'objective.db'}")
        storages.append(storage)
        study, _ = open_study(storage, spec)
        ctx = TrialContext(spec=spec, storage=storage, data=load_study_data(spec), heartbeat_interval=0.5)
        trial = study.ask()
        try:
            outcome = execute_trial(ctx, trial)
        finally:
            frozen = storage.get_trial(trial._trial_id)
        return outcome, frozen, ctx.epochs.read_epochs(spec.name)

    yield run
    for storage in storages:
        storage.engine.dispose()


@pytest.mark.slow
def test_a_complete_trial_is_scored_by_its_best_epoch(run_one) -> None:
    outcome, trial, epochs = run_one(NEVER)
    assert outcome.state == TrialState.COMPLETE and outcome.reason is None
    assert list(epochs["epoch"]) == [1, 2]
    assert outcome.value == pytest.approx(epochs["val_dice"].max())
    assert trial.user_attrs[BEST_EPOCH] == int(epochs.loc[epochs["val_dice"].idxmax(), "epoch"])
    assert trial.intermediate_values == pytest.approx(
        dict(zip(epochs["epoch"], epochs["val_dice"], strict=True))
    )
    # Two epochs are too few to call it healthy (issue 20): a cause, or too early.
    causes = ("stalled", "background_only", "unstable", "overfitting")
    assert trial.user_attrs[DIAGNOSIS] in ("too_early", *causes)
    assert STOP_REASON not in trial.user_attrs


@pytest.mark.slow
def test_a_plateau_stops_the_trial_with_its_reason_and_every_epoch_reported(run_one) -> None:
    outcome, trial, epochs = run_one(AT_ONCE)
    assert (outcome.state, outcome.reason) == (TrialState.PRUNED, "plateau")
    assert (trial.user_attrs[STOP_REASON], trial.user_attrs[STOP_EPOCH]) == ("plateau", 2)
    assert trial.user_attrs[STOP_DETAIL]["patience"] == 1
    assert outcome.message == trial.user_attrs[STOP_MESSAGE]
    assert sorted(trial.intermediate_values) == [1, 2] == list(epochs["epoch"])  # the last epoch included
    assert DIAGNOSIS in trial.user_attrs


def test_bad_settings_fail_the_trial_as_an_error(run_one, monkeypatch) -> None:
    def fit(config, train, val, on_epoch=None, **kwargs):
        raise ConfigError("learning_rate must be > 0 but got 0")

    monkeypatch.setattr(objective, "fit", fit)
    outcome, trial, _ = run_one(NEVER)
    assert (outcome.state, outcome.reason) == (TrialState.FAIL, "error")
    assert trial.user_attrs[STOP_REASON] == "error" and trial.user_attrs[STOP_EPOCH] == 0
    assert trial.user_attrs[STOP_MESSAGE] == "learning_rate must be > 0 but got 0"
    assert trial.state == TrialState.RUNNING  # the caller tells Optuna
    assert DIAGNOSIS not in trial.user_attrs  # nothing trained, nothing to diagnose


def test_out_of_memory_fails_with_the_parameters(run_one, monkeypatch) -> None:
    def fit(config, train, val, on_epoch=None, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(objective, "fit", fit)
    outcome, trial, _ = run_one(NEVER)
    assert (outcome.state, outcome.reason) == (TrialState.FAIL, "out_of_memory")
    assert set(trial.user_attrs[STOP_DETAIL]["params"]) == {"learning_rate", "optimizer"}


def test_an_interrupted_trial_carries_its_reason(tmp_path, monkeypatch) -> None:
    real_fit = objective.fit

    def fit(config, train, val, on_epoch=None, **kwargs):
        def interrupt_after_first(record):
            on_epoch(record)
            raise KeyboardInterrupt

        return real_fit(config, train, val, interrupt_after_first, **kwargs)

    monkeypatch.setattr(objective, "fit", fit)
    spec = smoke(NEVER)
    storage = open_storage(f"sqlite:///{tmp_path / 'interrupt.db'}")
    study, _ = open_study(storage, spec)
    trial = study.ask()
    with pytest.raises(KeyboardInterrupt):
        execute_trial(TrialContext(spec=spec, storage=storage, data=load_study_data(spec)), trial)
    attrs = storage.get_trial(trial._trial_id).user_attrs
    assert (attrs[STOP_REASON], attrs[STOP_EPOCH], attrs[STOP_DETAIL]) == (
        "interrupted",
        1,
        {"epochs_done": 1},
    )
    storage.engine.dispose()
