"""python -m search.report on crafted studies: CSV contents against the store, summary, plots, stability.

The studies are built the way ``search.execution.objective`` builds them (enqueue, ask, report each
epoch, user
attributes, tell) with hand-chosen parameters, outcomes and epoch metrics, so that every number in the
report can be checked against the store and against hand-computed counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from search.report.cli import main
from search.report.tables import EPOCH_REPORT_COLUMNS, TRIAL_COLUMNS_AFTER_PARAMS, TRIAL_COLUMNS_BEFORE_PARAMS
from search.store.engine import open_storage
from search.store.epochs import EpochStore
from unet.history import EPOCH_FIELDS

N_TRAIN = 16
MAX_EPOCHS = 4
SPACE = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1.0, "log": True, "step": None},
    "model.norm": {"type": "categorical", "choices": ["batch", "instance", "none"]},
}
DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-4, 1.0, log=True),
    "model.norm": CategoricalDistribution(["batch", "instance", "none"]),
}


@dataclass(frozen=True)
class Planned:
    """One trial of a crafted study."""

    learning_rate: float
    norm: str
    state: TrialState
    epochs: int  # epochs it trains (RUNNING: so far)
    stop_reason: str | None = None
    diagnosis: str | None = None


def spec_dict(name: str) -> dict:
    """A stored study file, as much of one as the report reads."""
    return {
        "name": name,
        "source": f"/studies/{name}.yaml",
        "data": {"source": "synthetic", "synthetic": {"n_train": N_TRAIN, "n_val": 8, "size": 32}},
        "space": SPACE,
        "fixed": {"batch_size": 8, "loss": "dice_bce", "model": {"depth": 2, "base_filters": 4}},
        "budget": {"n_trials": 20, "max_epochs": MAX_EPOCHS},
    }


def epoch_metrics(number: int, epoch: int, *, diverges: bool) -> dict[str, float]:
    """Distinct, many-digit metrics per trial and epoch; a diverging trial's last loss is infinite."""
    record = {field: 1 / (3 + number + epoch) + epoch / 7 for field in EPOCH_FIELDS}
    record["epoch"] = epoch
    record["val_dice"] = 0.1 + epoch / 7 + number / 1000
    record["val_loss"] = math.inf if diverges else 1 / (1 + epoch) + number / 1000
    shares = {"train_s": 0.5, "val_s": 0.25, "evidence_s": 0.05, "data_wait_s": 0.1}  # other: 10 %
    record |= {name: share * record["seconds"] for name, share in shares.items()}
    return record


def craft_study(storage: optuna.storages.RDBStorage, name: str, plan: list[Planned]) -> optuna.Study:
    """A study holding ``plan``'s trials in order, with epoch rows, intermediate values and user attrs."""
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    study.set_user_attr("spec", spec_dict(name))
    epochs = EpochStore(storage.engine)
    for planned in plan:
        study.enqueue_trial({"learning_rate": planned.learning_rate, "model.norm": planned.norm})
        trial = study.ask(DISTRIBUTIONS)
        trial.set_user_attr("train_images", N_TRAIN)
        dice = []
        for epoch in range(1, planned.epochs + 1):
            last = epoch == planned.epochs
            record = epoch_metrics(trial.number, epoch, diverges=last and planned.stop_reason == "diverged")
            epochs.record_epoch(name, trial._trial_id, trial.number, record)
            trial.report(record["val_dice"], epoch)
            dice.append(record["val_dice"])
        if planned.stop_reason is not None:
            trial.set_user_attr("stop_reason", planned.stop_reason)
            trial.set_user_attr("stop_epoch", planned.epochs)
            trial.set_user_attr("stop_message", f"stopped: {planned.stop_reason}, at epoch {planned.epochs}")
        if planned.diagnosis is not None:
            trial.set_user_attr("diagnosis", planned.diagnosis)
            trial.set_user_attr("diagnosis_summary", f"{planned.diagnosis}: as planned")
        if planned.state == TrialState.COMPLETE:
            trial.set_user_attr("best_epoch", dice.index(max(dice)) + 1)
            study.tell(trial, max(dice))
        elif planned.state != TrialState.RUNNING:
            study.tell(trial, state=planned.state)
    return study


# Five trials, one of each kind, the last still running.
SMALL = [
    Planned(0.01, "batch", TrialState.COMPLETE, 4, diagnosis="healthy"),
    Planned(0.3, "instance", TrialState.PRUNED, 2, "diverged", "diverged"),
    Planned(0.001, "none", TrialState.PRUNED, 3, "plateau", "stalled"),
    Planned(0.02, "batch", TrialState.FAIL, 1, "out_of_memory"),
    Planned(0.005, "instance", TrialState.RUNNING, 2),
]

# Large learning rates diverge, normalisation none stalls (one such trial is healthy), the rest is fine.
ALTERNATING = ["batch", "instance"] * 3
FINDINGS = (
    [
        Planned(lr, norm, TrialState.PRUNED, 2, "diverged", "diverged")
        for lr, norm in zip([0.06, 0.09, 0.12, 0.2, 0.35, 0.6], ALTERNATING, strict=True)
    ]
    + [
        Planned(lr, "none", TrialState.PRUNED, 3, "plateau", "stalled")
        for lr in [0.001, 0.0015, 0.002, 0.003]
    ]
    + [Planned(0.004, "none", TrialState.COMPLETE, 4, diagnosis="healthy")]
    + [
        Planned(lr, norm, TrialState.COMPLETE, 4, diagnosis="healthy")
        for lr, norm in zip([0.0011, 0.0018, 0.0025, 0.005, 0.01, 0.04], ALTERNATING, strict=True)
    ]
)


def run_report(url: str, out: Path, *studies: str) -> int:
    return main(["--storage", url, "--out", str(out), *(arg for s in studies for arg in ("--study", s))])


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


@pytest.fixture
def small_store(storage_url: str) -> str:
    storage = open_storage(storage_url)
    try:
        craft_study(storage, "small", SMALL)
    finally:
        storage.engine.dispose()
    return storage_url


def test_trials_csv_matches_the_store(small_store: str, tmp_path: Path) -> None:
    assert run_report(small_store, tmp_path / "r", "small") == 0
    table = read_csv(tmp_path / "r" / "trials.csv")
    assert list(table.columns) == [
        *TRIAL_COLUMNS_BEFORE_PARAMS, "learning_rate", "model.norm", *TRIAL_COLUMNS_AFTER_PARAMS
    ]  # fmt: skip
    stored = optuna.load_study(study_name="small", storage=small_store).get_trials(deepcopy=False)
    assert list(table["number"]) == [t.number for t in stored] == [0, 1, 2, 3, 4]
    assert list(table["state"]) == ["COMPLETE", "PRUNED", "PRUNED", "FAIL", "RUNNING"]
    for (_, row), trial in zip(table.iterrows(), stored, strict=True):
        assert row["learning_rate"] == pytest.approx(trial.params["learning_rate"], rel=1e-6)
        assert row["model.norm"] == trial.params["model.norm"]
        for attr in ("stop_reason", "stop_epoch", "diagnosis"):
            assert _cell(row[attr]) == trial.user_attrs.get(attr), attr
    complete = table.iloc[0]
    assert complete["objective"] == pytest.approx(stored[0].value, rel=1e-6)
    assert complete["best_epoch"] == 4 and complete["diagnosis"] == "healthy"
    assert table["objective"].iloc[1:].isna().all()  # only a COMPLETE trial has the objective
    # Hand-computed: epochs x 16 images; pruned trials saved (4 - epochs) x 16; unknown while running.
    assert list(table["epochs_run"]) == [4, 2, 3, 1, 2]
    assert list(table["compute_images"]) == [64, 32, 48, 16, 32]
    assert table["compute_saved_images"].iloc[:4].tolist() == [0, 32, 16, 0]
    assert pd.isna(table["compute_saved_images"].iloc[4])
    assert table.loc[1, "peak_val_dice"] == pytest.approx(0.1 + 2 / 7 + 1 / 1000, rel=1e-6)
    running = table.iloc[4]
    assert pd.isna(running["datetime_complete"]) and pd.isna(running["duration_s"])
    assert not pd.isna(running["datetime_start"])
    assert table.loc[3, "stop_message"] == "stopped: out_of_memory, at epoch 1"


def test_epochs_csv_has_one_row_per_trial_and_epoch(small_store: str, tmp_path: Path) -> None:
    assert run_report(small_store, tmp_path / "r", "small") == 0
    table = read_csv(tmp_path / "r" / "epochs.csv")
    assert list(table.columns) == list(EPOCH_REPORT_COLUMNS)
    expected = [(p.number, e) for p in _numbered(SMALL) for e in range(1, p.planned.epochs + 1)]
    assert list(zip(table["trial_number"], table["epoch"], strict=True)) == expected
    for row in table.itertuples(index=False):
        diverged = (
            SMALL[row.trial_number].stop_reason == "diverged" and row.epoch == SMALL[row.trial_number].epochs
        )
        want = epoch_metrics(row.trial_number, row.epoch, diverges=diverged)
        assert row.val_dice == pytest.approx(want["val_dice"], rel=1e-5)
        assert row.train_loss == pytest.approx(want["train_loss"], rel=1e-5)
        if diverged:
            assert math.isnan(row.val_loss)  # stored as NULL, written as an empty cell
        else:
            assert row.val_loss == pytest.approx(want["val_loss"], rel=1e-5)
    assert set(table["study"]) == {"small"}


def test_two_reports_of_one_store_are_identical(small_store: str, tmp_path: Path) -> None:
    assert run_report(small_store, tmp_path / "a", "small") == 0
    assert run_report(small_store, tmp_path / "b", "small") == 0
    for name in ("trials.csv", "epochs.csv", "summary.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_plots_are_written_and_not_blank(small_store: str, tmp_path: Path) -> None:
    assert run_report(small_store, tmp_path / "r", "small") == 0
    plots = tmp_path / "r" / "plots" / "small"
    written = sorted(p.name for p in plots.glob("*.png"))
    # One completed trial: importances (5 needed) are drawn from the val Dice at epoch 1 of all 5 trials,
    # parallel coordinates (2 needed) from epoch 2, the latest that half of them reached (the running one
    # too).
    assert written == [
        "learning_curves.png",
        "objective_vs_learning_rate.png",
        "objective_vs_model_norm.png",
        "optimization_history.png",
        "parallel_coordinates.png",
        "param_importances.png",
    ]
    for path in plots.glob("*.png"):
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300, path.name
        assert pixels[..., :3].std() > 0.05, f"{path.name} is blank"
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "![learning curves coloured by outcome](plots/small/learning_curves.png)" in summary
    assert "parameter importances (PED-ANOVA) of val Dice at epoch 1 (5 trials, pruned ones too)" in summary
    assert "parallel coordinates of val Dice at epoch 2 (4 trials, pruned ones too)" in summary


def test_running_study_is_reported(small_store: str, tmp_path: Path) -> None:
    assert run_report(small_store, tmp_path / "r", "small") == 0
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "5 trials: 1 complete, 2 pruned, 1 failed, 1 still running (the study is in progress)." in summary
    assert "| running | " in summary


def test_summary_findings_and_compute_on_a_crafted_study(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    storage = open_storage(url)
    craft_study(storage, "findings", FINDINGS)
    storage.engine.dispose()
    assert run_report(url, tmp_path / "r", "findings") == 0
    summary = (tmp_path / "r" / "summary.md").read_text()
    findings = summary.split("### Findings\n\n")[1].split("\n\n")[0].splitlines()
    assert findings == [
        "- all 6 trials with learning rate > 0.05 diverged within 2 epochs: narrow learning_rate to <= 0.05",
        # The healthy none trial trained at 0.004: none stalled below that, where batch and instance trained.
        "- all 4 trials with normalisation none and learning rate < 0.0035 stalled within 3 epochs (none of "
        "the 3 with normalisation batch or instance there did): narrow learning_rate to >= 0.0035 for "
        "normalisation none",
        "- 4 of 5 trials with normalisation none stalled and were stopped on a plateau within 3 epochs: "
        "drop none from model.norm's choices",
    ]
    # 6 x 2 + 4 x 3 + 7 x 4 = 52 epochs of 16 images; pruned trials saved 6 x 2 + 4 x 1 = 16 epochs.
    assert "Spent 832 training images in 52 epochs." in summary
    # epoch_metrics splits each epoch's seconds 50/25/5/10 %; the 52 epochs' seconds add up to 20.
    assert (
        "Epoch time (52 epochs, 20 s): training steps 50%, validation 25%, evidence 5%, "
        "waiting for data 10%, other 10%" in summary
    )
    assert (
        "Pruning saved 256 images, 24% of the 1,088 the study would have spent without it: "
        "10 pruned trials stopped after 2.4 of 4 epochs on average." in summary
    )
    # The best trial is the last healthy one (highest number breaks the planned Dice's ties upward).
    assert "Trial #16: val Dice " in summary and "| **learning_rate** | 0.04 |" in summary
    assert "| pruned: diverged | 6 | 0 | 0 | 6 |" in summary  # outcome x diagnosis counts
    assert "| pruned: plateau | 0 | 0 | 4 | 4 |" in summary
    # Issue 20: each trial's Dice beside the floor of predicting foreground everywhere, 2p / (1 + p) at the
    # rows' median validation foreground share p.
    p = pd.read_csv(tmp_path / "r" / "epochs.csv")["val_true_fg"].median()
    assert f"Predicting foreground everywhere scores val Dice {2 * p / (1 + p):.4f}" in summary
    assert "| trial | val Dice | vs all foreground |" in summary
    # With 7 completed trials every plot is drawn.
    assert len(list((tmp_path / "r" / "plots" / "findings").glob("*.png"))) == 6


def test_several_studies_side_by_side(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    storage = open_storage(url)
    craft_study(storage, "b-study", SMALL[:3])
    craft_study(storage, "a-study", SMALL[:2])
    storage.engine.dispose()
    assert run_report(url, tmp_path / "r", "b-study", "a-study") == 0
    trials = read_csv(tmp_path / "r" / "trials.csv")
    assert list(zip(trials["study"], trials["number"], strict=True)) == [
        ("a-study", 0), ("a-study", 1), ("b-study", 0), ("b-study", 1), ("b-study", 2)
    ]  # fmt: skip
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert summary.startswith("# Search report: a-study, b-study\n")
    assert "| a-study | 2 | 1 | 1 | 0 | 0 | " in summary and "| b-study | 3 | 1 | 2 | 0 | 0 | " in summary
    assert summary.index("## Study `a-study`") < summary.index("## Study `b-study`")
    assert (tmp_path / "r" / "plots" / "comparison.png").stat().st_size > 10_000


def test_default_out_dir_and_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("UNET_SEARCH_STORAGE", raising=False)
    storage = open_storage(f"sqlite:///{tmp_path / 'unet-search.db'}")
    craft_study(storage, "small", SMALL[:2])
    storage.engine.dispose()
    assert main(["--study", "small"]) == 0
    assert (tmp_path / "reports" / "small" / "summary.md").is_file()
    assert "trials.csv (2 trials), epochs.csv (6 epochs)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("store", "study", "message"),
    [
        (
            "missing.db",
            "small",
            "no study store at 'sqlite:///{tmp}/missing.db': run python -m search.run first",
        ),
        ("store.db", "smal", "no study named 'smal' in this store: choose one of small"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys, store: str, study: str, message: str
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'store.db'}")
    craft_study(storage, "small", SMALL[:1])
    storage.engine.dispose()
    assert run_report(f"sqlite:///{tmp_path / store}", tmp_path / "r", study) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(tmp=tmp_path)) and err.count("\n") == 1
    assert not (tmp_path / "missing.db").exists()  # a typo does not create an empty store


def _cell(value: object) -> object:
    """A CSV cell as the store holds it: empty is None, whole floats are ints."""
    if pd.isna(value):
        return None
    return int(value) if isinstance(value, float) and value.is_integer() else value


@dataclass(frozen=True)
class _Numbered:
    number: int
    planned: Planned


def _numbered(plan: list[Planned]) -> list[_Numbered]:
    return [_Numbered(i, p) for i, p in enumerate(plan)]


def test_a_trial_stopped_after_its_peak_is_ranked_by_its_best_epoch(tmp_path: Path) -> None:
    # Dice grows with the trial number (epoch_metrics): the plateau-stopped #3 has the best epoch of all,
    # the diverged #4 a higher one still, but a diverged configuration is no candidate.
    plan = [
        Planned(0.01, "batch", TrialState.COMPLETE, 4, diagnosis="healthy"),
        Planned(0.02, "batch", TrialState.COMPLETE, 4, diagnosis="healthy"),
        Planned(0.001, "none", TrialState.PRUNED, 2, "underperforming", "stalled"),
        Planned(0.005, "instance", TrialState.PRUNED, 4, "plateau", "healthy"),
        Planned(0.3, "instance", TrialState.PRUNED, 4, "diverged", "diverged"),
    ]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    storage = open_storage(url)
    craft_study(storage, "peaks", plan)
    storage.engine.dispose()
    assert run_report(url, tmp_path / "r", "peaks") == 0
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "Trial #3: val Dice 0.6744 at epoch 4, pruned: plateau, diagnosis healthy." in summary
    top = summary.split("### Top ")[1].split("\n\n")[1].splitlines()[2:]
    assert [line.split(" | ")[0] for line in top] == ["| #3", "| #1", "| #0", "| #2"]
    trials = pd.read_csv(tmp_path / "r" / "trials.csv")
    assert trials.loc[trials["number"] == 2, "best_epoch"].item() == 2  # a stopped trial's best epoch
