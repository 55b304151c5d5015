"""One winner: every command that names the best trial of a study names the same one (search.ranking)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from search.checkpoints.keep import kept
from search.execution.progress import summary
from search.export import ExportError, choose
from search.ranking import rank_trials
from search.report.cli import main as report_main
from search.report.data import load_study_record
from search.retrain import pick_trial
from search.store.engine import open_storage

DISTRIBUTIONS = {"learning_rate": FloatDistribution(1e-4, 1.0, log=True)}


def _trial(state: TrialState, dice: list[float], reason: str | None = None) -> FrozenTrial:
    return create_trial(
        state=state,
        value=max(dice) if state == TrialState.COMPLETE else None,
        params={"learning_rate": 0.01},
        distributions=DISTRIBUTIONS,
        intermediate_values=dict(enumerate(dice, start=1)),
        user_attrs={"stop_reason": reason} if reason else {},
    )


# The synthetic table of the issue: the best trial (#1, 0.68) was pruned after its peak, the best COMPLETE
# one (#0) reached 0.62; a diverged trial peaked higher still but is no candidate, a failed one neither.
TRIALS = [
    (TrialState.COMPLETE, [0.5, 0.62], None),
    (TrialState.PRUNED, [0.6, 0.68, 0.66], "plateau"),
    (TrialState.COMPLETE, [0.4, 0.55], None),
    (TrialState.PRUNED, [0.7, float("nan")], "diverged"),
    (TrialState.FAIL, [0.9], "worker_lost"),
    (TrialState.PRUNED, [0.68], "underperforming"),  # ties #1: the lower number wins
]


@pytest.fixture
def study_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="peaks", direction="maximize")
    for state, dice, reason in TRIALS:
        study.add_trial(_trial(state, dice, reason))
    study_id = storage.get_study_id_from_name("peaks")
    # Only COMPLETE trials keep a checkpoint: the best COMPLETE one (#0) has one, the pruned winner none.
    index = [{"trial": 0, "artifact_id": "a0", "location": str(tmp_path), "epoch": 2, "value": 0.62}]
    storage.set_study_user_attr(study_id, "checkpoints", index)
    storage.engine.dispose()
    return url


def test_every_command_names_the_same_winner(study_url: str, tmp_path: Path) -> None:
    storage = open_storage(study_url, read_only=True)
    record = load_study_record(storage, "peaks")
    assert [t.number for t in rank_trials(record.trials)] == [1, 5, 0, 2]
    assert pick_trial(record.trials, "peaks").number == 1  # search.retrain
    # search.export names the same winner, and since it has no checkpoint, says how to rebuild it.
    with pytest.raises(ExportError, match=r"trial #1 of 'peaks' has no kept checkpoint.*--trial 0"):
        choose(record.trials, kept(storage, "peaks"), "peaks", None)
    study = optuna.load_study(study_name="peaks", storage=storage)
    assert "Best trial #1: val Dice 0.6800 at epoch 2" in summary(study, n_trials=6, storage_display="s")
    assert report_main(["--storage", study_url, "--study", "peaks", "--out", str(tmp_path / "r")]) == 0
    assert "Trial #1: val Dice 0.68" in (tmp_path / "r" / "summary.md").read_text()
