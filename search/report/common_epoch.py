"""Every trial's value at one common epoch: what importances and parallel coordinates are drawn from when
too few trials complete.

Under successive halving most trials end at the first rung, and a study of 16 trials may complete one.
Each trial that reached epoch ``e`` has a val Dice there, so at the highest epoch that enough trials
reached the trials can be compared on equal terms, pruned ones included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState, create_trial

from search.report.data import StudyRecord


@dataclass(frozen=True)
class CommonEpoch:
    """A study rebuilt in memory with each trial's val Dice at ``epoch`` as its value."""

    epoch: int
    study: optuna.Study
    trials: int  # trials in ``study``


def common_epoch_study(record: StudyRecord, needed: int) -> CommonEpoch | None:
    """The trials' val Dice at the latest epoch that at least ``needed`` trials with parameters, and half of
    those that reached epoch 1, reached.

    Returns:
        The rebuilt study, or None when not even epoch 1 has ``needed`` trials.
    """
    epochs = record.epochs.dropna(subset=["val_dice"])
    with_params = {t._trial_id: t for t in record.trials if t.params and t.state != TrialState.WAITING}
    epochs = epochs[epochs["trial_id"].isin(with_params)]
    reached = epochs.groupby("epoch")["trial_id"].nunique()
    if reached.empty:
        return None
    # The latest epoch that still holds half the trials: later values say more, more trials say it surer.
    most = int(reached.max())
    enough = [int(e) for e, n in reached.items() if n >= max(needed, most / 2)]
    if not enough:
        return None
    epoch = max(enough)
    at = epochs[epochs["epoch"] == epoch]
    study = optuna.create_study(study_name=f"{record.name}@epoch{epoch}", direction="maximize")
    for trial_id, value in zip(at["trial_id"], at["val_dice"], strict=True):
        trial = with_params[int(trial_id)]
        if math.isfinite(float(value)):
            study.add_trial(
                create_trial(params=trial.params, distributions=trial.distributions, value=float(value))
            )
    return CommonEpoch(epoch, study, len(study.trials))
