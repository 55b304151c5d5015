"""Compute budgets: what a study spent, read from the store, and the search run until it is spent."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_run import study_file, trials

from search.execution.budget import Limits, measure_compute
from search.execution.study import count_trials, open_study
from search.outcome import FOLD_VAL_DICE
from search.run import main
from search.spec.schema import load_spec
from search.store.engine import open_storage
from search.store.epochs import EpochStore
from unet.history import EPOCH_FIELDS, TEXT_FIELDS

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Successive halving from epoch 1, as the shipped studies prune: most trials stop after one epoch.
HALVING = {
    "cross_trial": {"rule": "successive_halving", "warmup_epochs": 0, "min_trials": 0, "reduction_factor": 3}
}


def epoch_row(epoch: int) -> dict:
    return {
        name: ("" if name in TEXT_FIELDS else float(epoch if name == "epoch" else 0.5))
        for name in EPOCH_FIELDS
    }


def test_compute_counts_every_trained_epoch_and_reserves_the_running_trials(tmp_path: Path) -> None:
    # max_epochs 2 on 3 folds: a full trial is 6 epochs, the budget of 3 full trials 18.
    budget = {"n_trials": None, "compute": 3, "max_epochs": 2}
    spec = load_spec(str(study_file(tmp_path, "counted", budget=budget, objective={"folds": 3})))
    storage = open_storage(f"sqlite:///{tmp_path / 'c.db'}")
    study, _ = open_study(storage, spec)
    epochs = EpochStore(storage.engine)
    limits = Limits.of(spec)

    def train(n: int) -> optuna.Trial:
        trial = study.ask()
        for epoch in range(1, n + 1):
            epochs.record_epoch(spec.name, trial._trial_id, trial.number, epoch_row(epoch))
        return trial

    def standing() -> tuple[int, int, bool, bool]:
        compute = measure_compute(study, epochs, spec, compute=spec.budget.compute)
        counts = count_trials(study)
        return (
            compute.spent,
            compute.reserved,
            limits.may_start(counts, compute),
            limits.reached(counts, compute),
        )

    complete = train(2)
    complete.set_user_attr(FOLD_VAL_DICE, [0.5, 0.6, 0.7])  # folds 2 and 3 trained 2 epochs each, no rows
    study.tell(complete, 0.6)
    study.tell(train(1), state=TrialState.PRUNED)
    assert standing() == (7, 0, True, False)  # 7 + a full trial of 6 fit in 18
    running = train(1)
    assert standing() == (8, 5, False, False)  # 8 + 5 reserved + 6 > 18: wait for the running trial
    storage.set_trial_user_attr(running._trial_id, "stop_reason", "worker_lost")
    study.tell(running, state=TrialState.FAIL)  # a lost trial spent its epoch, and reserves no more
    assert standing() == (8, 0, True, False)
    study.tell(train(6), state=TrialState.PRUNED)
    assert standing() == (14, 0, False, True)  # 14 + 6 > 18: the budget is spent
    compute = measure_compute(study, epochs, spec, compute=3)
    assert compute.describe() == "2.3 of 3 full trials (14 of 18 epochs)"
    storage.engine.dispose()


def test_a_compute_budget_buys_more_trials_than_pruning_saves_and_resuming_counts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 3 full trials of 3 epochs: 9 epochs. Before, "n_trials: 3" stopped at 3 trials whatever pruning saved.
    path = study_file(
        tmp_path, "spend", budget={"n_trials": None, "compute": 3, "max_epochs": 3}, pruning=HALVING
    )
    url = f"sqlite:///{tmp_path / 'spend.db'}"
    monkeypatch.chdir(tmp_path)
    base = ["--study", str(path), "--storage", url, "--backend", "local"]
    # --n-trials still caps the proposals.
    assert main([*base, "--n-trials", "2", "--compute", "2"]) == 0
    assert len(trials(url, "spend")) == 2
    first = sum(EpochStore(open_storage(url).engine).epochs_per_trial("spend").values())
    capsys.readouterr()
    # Resumed without the cap and with another compute (a budget change is no conflict): it counts
    # the epochs spent before and starts trials until no full trial fits in the 9 epochs.
    assert main([*base, "--compute", "3"]) == 0
    out, err = capsys.readouterr()
    assert f"{first / 3:.1f} full trials' compute spent" in err
    done = trials(url, "spend")
    spent = sum(EpochStore(open_storage(url).engine).epochs_per_trial("spend").values())
    assert 9 - 3 < spent <= 9  # no full trial fits in what is left
    pruned = [t for t in done if t.state == TrialState.PRUNED]
    assert len(pruned) >= 1 and len(done) > 3  # what pruning saved bought more trials
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
    assert f"compute spent: {spent / 3:.1f} of 3 full trials ({spent} of 9 epochs)" in out
    assert f"[compute {spent / 3:.1f}/3, {len(done)} trials]" in err  # the last progress line
