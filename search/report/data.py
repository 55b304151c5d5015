"""What a report reads from the study store: one consistent snapshot of a study's trials and epochs.

Reports, the retrain command and the dashboard open the store with
:func:`search.store.engine.open_existing_storage`, which refuses to create one. A study that is still
running is read as it is at that moment: the epoch rows of trials that started after the trials were
read are left out, so every epoch row belongs to a reported trial.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial

from search.outcome import stored_spec, stored_test_scores, train_images
from search.store.engine import StoreError
from search.store.epochs import EpochStore
from unet.chance import constant_dice

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyRecord:
    """One study as read from the store: its trials, its epoch rows and its stored study file."""

    name: str  # the study's name in the store
    trials: tuple[FrozenTrial, ...]  # every trial, by number, RUNNING and WAITING ones included
    epochs: pd.DataFrame  # search.store.epochs.EPOCH_COLUMNS rows of these trials, by trial number then epoch
    spec: dict[str, Any]  # the resolved study file (study user attr "spec"); {} if not made by unet-search
    # Held-out test scores by trial number (study user attr "test_scores", search.execution.testset).
    test_scores: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def space(self) -> dict[str, dict[str, Any]]:
        """The searched parameters' definitions from the stored spec (``{}`` when unknown)."""
        return dict(self.spec.get("space") or {})

    @property
    def max_epochs(self) -> int | None:
        """Epochs a trial that is not pruned trains (the spec's ``budget.max_epochs``), if known."""
        value = (self.spec.get("budget") or {}).get("max_epochs")
        return int(value) if value is not None else None

    @property
    def param_names(self) -> list[str]:
        """Parameter names: the space's order first, then any other trial parameter, sorted."""
        names = list(self.space)
        others = {name for trial in self.trials for name in trial.params if name not in self.space}
        return names + sorted(others)

    @property
    def constant_dice(self) -> float | None:
        """The val Dice of predicting every pixel foreground, the floor a trial must beat (the epoch rows'
        validation foreground share; None when they do not record it)."""
        if "val_true_fg" not in self.epochs:
            return None
        shares = self.epochs["val_true_fg"].dropna()
        return constant_dice(float(shares.median()))["all_foreground"] if len(shares) else None

    def train_images(self, trial: FrozenTrial) -> int | None:
        """Training images one epoch of ``trial`` went through, or None when the store does not say.

        Trials record it themselves (user attr ``train_images``); for older trials of synthetic studies
        the spec's ``n_train`` is the same number.
        """
        recorded = train_images(trial)
        if recorded is not None:
            return recorded
        data = self.spec.get("data") or {}
        if data.get("source") == "synthetic":
            n_train = (data.get("synthetic") or {}).get("n_train")
            return int(n_train) if n_train is not None else None
        return None


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """The names of every study in the store, sorted."""
    return sorted(study.study_name for study in storage.get_all_studies())


def load_study_record(storage: optuna.storages.RDBStorage, name: str) -> StudyRecord:
    """Read one study: its trials, the epoch rows of those trials, and its stored study file.

    Raises:
        StoreError: no study of that name is in the store (the message lists the ones there are).
    """
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError as e:
        names = study_names(storage)
        raise StoreError(
            f"no study named {name!r} in this store: choose one of {', '.join(names) or '(none)'}"
        ) from e
    trials = tuple(sorted(storage.get_all_trials(study_id, deepcopy=False), key=lambda t: t.number))
    attrs = storage.get_study_user_attrs(study_id)
    epochs = EpochStore(storage.engine).read_epochs(name)
    # Read after the trials: rows of trials begun in between are not part of this snapshot.
    known = {trial._trial_id for trial in trials}
    epochs = epochs[epochs["trial_id"].isin(known)].reset_index(drop=True)
    logger.info("read study %s: %d trials, %d epoch rows", name, len(trials), len(epochs))
    return StudyRecord(
        name=name,
        trials=trials,
        epochs=epochs,
        spec=stored_spec(attrs),
        test_scores=stored_test_scores(attrs),
    )
