"""K-fold cross-validation trials: the value is the mean of the folds, pruning acts on fold 1."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from test_objective import AT_ONCE, NEVER, smoke
from test_run import DSB, study_file
from test_testset import dataset

from search import run
from search.checkpoints.keep import download, kept
from search.execution import folds as folds_module
from search.execution.data import load_study_data
from search.execution.objective import TrialContext, execute_trial
from search.execution.study import open_study
from search.execution.testset import load_test_set
from search.outcome import BEST_EPOCH, FOLD_BEST_EPOCHS, FOLD_VAL_DICE, STOP_DETAIL, STOP_MESSAGE
from search.report.cli import main as report_main
from search.retrain import main as retrain_main
from search.spec.schema import StudySpec, load_spec
from search.spec.space import build_config
from search.store.engine import open_storage
from unet.checkpoint import load_checkpoint
from unet.fit import FitResult, fit
from unet.history import EpochRecord

optuna.logging.set_verbosity(optuna.logging.WARNING)


def with_folds(spec: StudySpec, k: int) -> StudySpec:
    data = spec.to_dict()
    data.pop("source")
    data["objective"] = {**data["objective"], "folds": k}
    return StudySpec.from_dict(data)


@pytest.fixture
def run_folds(tmp_path: Path):
    """``run_folds(plateau, k)``: one k-fold trial of the smoke study: (outcome, trial, epochs, context)."""
    storages = []

    def run_trial(plateau: dict[str, Any], k: int):
        spec = with_folds(smoke(plateau), k)
        storage = open_storage(f"sqlite:///{tmp_path / 'folds.db'}")
        storages.append(storage)
        study, _ = open_study(storage, spec)
        ctx = TrialContext(spec=spec, storage=storage, data=load_study_data(spec), heartbeat_interval=0.5)
        study.enqueue_trial({"learning_rate": 0.01, "optimizer": "adam"})
        trial = study.ask()
        outcome = execute_trial(ctx, trial)
        return outcome, storage.get_trial(trial._trial_id), ctx.epochs.read_epochs(spec.name), ctx

    yield run_trial
    for storage in storages:
        storage.engine.dispose()


@pytest.mark.slow
def test_the_value_is_the_mean_of_the_folds_best_epochs(run_folds) -> None:
    outcome, trial, epochs, ctx = run_folds(NEVER, 3)
    values, best_epochs = trial.user_attrs[FOLD_VAL_DICE], trial.user_attrs[FOLD_BEST_EPOCHS]
    assert outcome.state == TrialState.COMPLETE and len(values) == len(best_epochs) == 3
    assert outcome.value == pytest.approx(statistics.fmean(values), abs=1e-12)
    assert outcome.message == f"val Dice {outcome.value:.4f} (mean of 3 folds)"
    # The epoch table and the intermediate values are fold 1's, and so is best_epoch.
    assert list(epochs["epoch"]) == [1, 2] and values[0] == pytest.approx(epochs["val_dice"].max())
    assert trial.intermediate_values == pytest.approx(
        dict(zip(epochs["epoch"], epochs["val_dice"], strict=True))
    )
    assert trial.user_attrs[BEST_EPOCH] == best_epochs[0]
    # Fold 3's value is what training the trial's config on fold 3 alone gives.
    config = build_config(ctx.spec, trial.params, in_channels=1, num_classes=1)
    alone = fit(config, *ctx.data.folds[2])
    assert alone.best is not None and (alone.best.val_dice, alone.best.epoch) == (values[2], best_epochs[2])


@pytest.mark.slow
def test_a_trial_pruned_in_fold_1_runs_no_other_fold(run_folds, monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(folds_module, "fit", lambda *args, **kwargs: calls.append(1))
    outcome, trial, epochs, _ = run_folds(AT_ONCE, 2)
    assert (outcome.state, outcome.reason) == (TrialState.PRUNED, "plateau")
    assert calls == [] and FOLD_VAL_DICE not in trial.user_attrs
    assert sorted(trial.intermediate_values) == [1, 2] == list(epochs["epoch"])


def test_a_later_fold_that_diverges_prunes_the_trial(run_folds, monkeypatch) -> None:
    def diverging(config, train, val, on_epoch=None, **kwargs):
        record = EpochRecord(
            epoch=1, train_loss=float("nan"), val_loss=1.0, val_dice=0.1, val_iou=0.1, learning_rate=0.01,
            grad_norm=1.0, grad_norm_max=1.0, seconds=0.1, images_per_s=100.0,
        )  # fmt: skip
        on_epoch(record)
        message = "train loss became nan at epoch 1, step 2: lower the learning rate"
        return FitResult(model=None, history=[record], stop_reason="diverged", stop_message=message)  # type: ignore[arg-type]

    monkeypatch.setattr(folds_module, "fit", diverging)
    outcome, trial, _, _ = run_folds(NEVER, 2)
    assert (outcome.state, outcome.reason) == (TrialState.PRUNED, "diverged")
    assert trial.user_attrs[STOP_MESSAGE].startswith("fold 2: train loss became nan")
    assert trial.user_attrs[STOP_DETAIL]["fold"] == 2
    assert len(trial.user_attrs[FOLD_VAL_DICE]) == 1  # fold 1's value, kept for the record


@pytest.mark.slow
def test_a_k_fold_search_keeps_fold_1s_model_and_reports_the_folds(tmp_path: Path, capsys) -> None:
    path = study_file(tmp_path, "folded", objective={"folds": 2}, budget={"n_trials": 2, "max_epochs": 2})
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert run.main(["--study", str(path), "--storage", url, "--backend", "local"]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="folded", storage=url)
    best = study.best_trial
    values = best.user_attrs[FOLD_VAL_DICE]
    assert best.value == pytest.approx(statistics.fmean(values), abs=1e-12)
    assert f"val Dice {best.value:.4f}, the mean of 2 folds" in out
    # The kept checkpoint is fold 1's best epoch, ranked by the trial's value.
    entry = next(e for e in kept(open_storage(url), "folded") if e["trial"] == best.number)
    assert entry["value"] == pytest.approx(best.value)
    download(entry, "folded", tmp_path / "model.pt")
    checkpoint = load_checkpoint(tmp_path / "model.pt")
    assert checkpoint.epoch == best.user_attrs[BEST_EPOCH] == best.user_attrs[FOLD_BEST_EPOCHS][0]
    assert checkpoint.metrics["val_dice"] == pytest.approx(values[0])
    assert report_main(["--storage", url, "--out", str(tmp_path / "r"), "--study", "folded"]) == 0
    table = pd.read_csv(tmp_path / "r" / "trials.csv")
    row = table[table["number"] == best.number].iloc[0]
    assert json.loads(row["fold_val_dice"]) == pytest.approx(values, abs=1e-6)
    assert row["peak_val_dice"] == pytest.approx(best.value, rel=1e-5)
    assert "the mean of 2 folds" in (tmp_path / "r" / "summary.md").read_text()
    # search.retrain trains on fold 1's split, so it repeats the kept checkpoint's fold-1 result.
    out = tmp_path / "retrained"
    args = ["--study", "folded", "--storage", url, "--out", str(out), "--trial", str(best.number), "--quiet"]
    assert retrain_main(args) == 0
    assert pd.read_csv(out / "metrics.csv")["val_dice"].max() == pytest.approx(values[0], abs=1e-6)


def test_more_folds_than_a_folders_images_is_one_line(tmp_path: Path, capsys) -> None:
    root = dataset(tmp_path / "few", sorted(p.stem for p in (DSB / "images").iterdir())[:3])
    folder = {"path": str(root), "test_fraction": 0.34, "patch_size": 64}
    path = study_file(tmp_path, "few", data={"source": "folder", "folder": folder}, objective={"folds": 3})
    assert run.main(["--study", str(path), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 2
    err = capsys.readouterr().err
    assert "2 image(s) are too few for 3 folds" in err and "objective.folds to at most 2" in err
    assert err.strip().count("\n") == 0


def test_val_fraction_does_not_count_against_the_test_share_under_folds(tmp_path: Path) -> None:
    # Issue 22 case 13: folds 2 with test_fraction 0.85 was refused with "no image would be left to train
    # on" (val_fraction 0.2 + 0.85 >= 1), while val_fraction does not apply under folds.
    root = dataset(tmp_path / "ten", sorted(p.stem for p in (DSB / "images").iterdir())[:10])
    folder = {"path": str(root), "test_fraction": 0.85, "patch_size": 64}
    path = study_file(
        tmp_path, "mostly-test", data={"source": "folder", "folder": folder}, objective={"folds": 2}
    )
    spec = load_spec(str(path))
    assert spec.data.folder is not None and spec.data.folder.val_fraction == 0.2  # the default, unused
    data = load_study_data(spec)
    test = load_test_set(spec, data)
    assert test is not None and len(test) == 8  # round(10 * 0.85)
    pool = {stem for _, val in data.folds for stem in val.stems}
    assert len(data.folds) == 2 and len(pool) == 2 and pool.isdisjoint(test.stems)
    assert all(set(train.stems) == pool - set(val.stems) for train, val in data.folds)
