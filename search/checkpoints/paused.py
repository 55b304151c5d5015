"""Paused trials' training states in the study's artifact store, until they are continued or swept.

A trial the cross-trial rule pauses (``pruning.cross_trial.pause``) uploads its last epoch's state
(``unet.train_state``: weights, optimiser, scheduler, random generators, the curve so far) as
``train_state.pt`` into the study's artifact folder, beside the kept checkpoints, and records its
artifact id on itself (``search.outcome.PAUSED_STATE``) before it is told PRUNED. A continuation
(``search.execution.promotion``) downloads it; once the continuation has finished, whatever its
outcome, the state is removed. ``search.checkpoints.keep.reconcile`` keeps the states still needed at
the start of a run and sweeps them all at its end once the study is done (its budget has no room and
no trial runs): then no paused trial can be promoted any more.

Uploading and recording hold the study's claim lock, as the kept checkpoints do, so a sweep never meets
a state that is written but not yet recorded.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.artifacts import download_artifact, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from search.checkpoints.store import study_store
from search.outcome import PAUSED_STATE, continued_from, is_retryable, paused_state
from search.store.claims import claim_lock

if TYPE_CHECKING:  # torch, imported where a state is written or read: the index's readers stay light
    from unet.train_state import TrainState

logger = logging.getLogger(__name__)

FILE_NAME = "train_state.pt"


def save_paused(
    storage: optuna.storages.RDBStorage,
    location: str,
    study_name: str,
    trial: optuna.Trial,
    state: TrainState,
) -> str:
    """Upload a RUNNING trial's state and record its artifact id on the trial; returns the id."""
    from unet.train_state import save_train_state

    with tempfile.TemporaryDirectory() as tmp, claim_lock(storage.engine, study_name):
        path = Path(tmp) / FILE_NAME
        save_train_state(path, state)
        artifact_id = upload_artifact(
            artifact_store=study_store(location, study_name), file_path=str(path), study_or_trial=trial
        )
        trial.set_user_attr(PAUSED_STATE, artifact_id)
    return artifact_id


def load_paused(location: str, study_name: str, artifact_id: str) -> TrainState:
    """Download a paused trial's state.

    Raises:
        ArtifactNotFound: it was swept (the run that paused it ended) or never written.
        unet.errors.CheckpointError: the file is not a train state this version reads.
    """
    from unet.train_state import load_train_state

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FILE_NAME
        download_artifact(
            artifact_store=study_store(location, study_name), file_path=str(path), artifact_id=artifact_id
        )
        return load_train_state(path)


def remove_paused(location: str, study_name: str, artifact_id: str) -> None:
    """Remove one paused state (gone already is fine)."""
    with contextlib.suppress(ArtifactNotFound):
        study_store(location, study_name).remove(artifact_id)


def needed_states(trials: list[FrozenTrial]) -> set[str]:
    """The artifact ids of paused states a later trial may still continue from: those of paused trials
    whose continuation has not yet finished (a retryable failure of it does not count as finished)."""
    continued = {
        origin
        for t in trials
        if (origin := continued_from(t.user_attrs)) is not None
        and t.state.is_finished()
        and not (t.state == TrialState.FAIL and is_retryable(t.user_attrs))
    }
    return {
        artifact_id
        for t in trials
        if (artifact_id := paused_state(t.user_attrs)) is not None and t.number not in continued
    }
