"""Which trials keep their best-epoch checkpoint: the top k by value, in Optuna's artifact store.

A COMPLETE trial that ranks among the study's ``keep_top_k`` best uploads its checkpoint (``model.pt``)
before it is told; the checkpoint that falls out of the top k is removed. PRUNED and FAILED trials keep
none. What is kept is recorded twice:

- the study's user attribute ``checkpoints`` (``search.outcome.CHECKPOINTS``): the kept checkpoints,
  best first, each ``{"trial", "artifact_id", "location", "epoch", "value"}``; it always names every
  file there is;
- the trial's user attribute ``checkpoint`` (``search.outcome.CHECKPOINT``): ``{"artifact_id",
  "location", "epoch"}`` as uploaded (a finished trial cannot be changed, so it stays after an eviction:
  the index says what is kept).

Optuna also lists every upload in the trial's system attributes (``artifacts:<id>``: what the dashboard
shows). A worker that died between its upload and the index update leaves a file the index does not name;
``sweep_orphans`` (run at the end of every ``search.run``) removes those.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import download_artifact, get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

from search.checkpoints.store import resolve_location, study_folder, study_store
from search.outcome import CHECKPOINT, CHECKPOINTS, checkpoint_index, kept_checkpoint
from search.ranking import rank_key
from search.spec.schema import StudySpec
from search.store.claims import claim_lock
from search.store.location import StoreLocation

logger = logging.getLogger(__name__)

FILE_NAME = "model.pt"


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where a study's checkpoints go and how many it keeps."""

    location: str | None  # folder or s3://bucket[/prefix]; None: keep none
    keep_top_k: int  # checkpoints kept per study (0: none)

    @property
    def enabled(self) -> bool:
        return self.location is not None and self.keep_top_k > 0


def checkpoint_policy(spec: StudySpec, store: StoreLocation) -> CheckpointPolicy:
    """The study file's ``artifacts`` section applied to the store (see ``search.checkpoints.store``)."""
    return CheckpointPolicy(resolve_location(spec.artifacts.path, store), spec.artifacts.keep_top_k)


def describe_policy(policy: CheckpointPolicy, study_name: str) -> str:
    """One line for the run's header: where checkpoints go, or why none are kept."""
    if policy.location is None:
        return "off (a server store needs artifacts.path in the study file: a shared folder or s3://bucket)"
    if policy.keep_top_k <= 0:
        return "off (artifacts.keep_top_k is 0)"
    return f"best {policy.keep_top_k} trials keep theirs in {study_folder(policy.location, study_name)}"


def kept(storage: optuna.storages.BaseStorage, study_name: str) -> list[dict[str, Any]]:
    """The study's kept checkpoints, best first (the index)."""
    study_id = storage.get_study_id_from_name(study_name)
    return checkpoint_index(storage.get_study_user_attrs(study_id))


def keep_checkpoint(
    storage: optuna.storages.RDBStorage,
    study_name: str,
    trial: optuna.Trial,
    *,
    policy: CheckpointPolicy,
    value: float,
    epoch: int,
    write: Callable[[Path], None],
) -> str | None:
    """Upload the trial's checkpoint when it ranks among the top k, evicting the one that falls out.

    Args:
        trial: a RUNNING trial about to be told COMPLETE with ``value``.
        write: writes the checkpoint file to the given path.

    Returns:
        The artifact id, or None when the trial does not rank (or the policy keeps none).
    """
    if policy.location is None or policy.keep_top_k <= 0:
        return None
    study_id = storage.get_study_id_from_name(study_name)
    entry: dict[str, Any] = {
        "trial": trial.number,
        "location": policy.location,
        "epoch": int(epoch),
        "value": float(value),
    }
    # The index is read, changed and written under the study's lock: workers finish trials concurrently.
    with claim_lock(storage.engine, study_name):
        index = checkpoint_index(storage.get_study_user_attrs(study_id))
        ranked = sorted([*index, entry], key=lambda e: rank_key(e["value"], e["trial"]))
        if not any(e is entry for e in ranked[: policy.keep_top_k]):
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / FILE_NAME
            write(path)
            entry["artifact_id"] = upload_artifact(
                artifact_store=study_store(policy.location, study_name),
                file_path=str(path),
                study_or_trial=trial,
            )
        trial.set_user_attr(CHECKPOINT, {k: entry[k] for k in ("artifact_id", "location", "epoch")})
        storage.set_study_user_attr(study_id, CHECKPOINTS, ranked[: policy.keep_top_k])
    for evicted in ranked[policy.keep_top_k :]:
        logger.info(
            "trial %d's checkpoint falls out of the top %d: removed", evicted["trial"], policy.keep_top_k
        )
        _remove(evicted["location"], study_name, evicted["artifact_id"])
    return str(entry["artifact_id"])


def sweep_orphans(storage: optuna.storages.BaseStorage, study_name: str) -> list[str]:
    """Remove the study's uploaded checkpoints that the index does not name; returns their ids."""
    study_id = storage.get_study_id_from_name(study_name)
    named = {e["artifact_id"] for e in checkpoint_index(storage.get_study_user_attrs(study_id))}
    removed = []
    for trial in storage.get_all_trials(study_id, deepcopy=False):
        location = kept_checkpoint(trial).get("location")
        for meta in get_all_artifact_meta(trial, storage=storage):
            if meta.filename != FILE_NAME or meta.artifact_id in named:
                continue
            if location is None:  # the worker died before it recorded where: the index's current place
                location = next((e["location"] for e in kept(storage, study_name)), None)
            if location is not None and _remove(location, study_name, meta.artifact_id):
                removed.append(meta.artifact_id)
    return removed


def download(entry: dict[str, Any], study_name: str, path: Path) -> None:
    """Copy a kept checkpoint (an index entry) to ``path``.

    Raises:
        ArtifactNotFound: the file is gone from its location.
    """
    download_artifact(
        artifact_store=study_store(entry["location"], study_name),
        file_path=str(path),
        artifact_id=entry["artifact_id"],
    )


def _remove(location: str, study_name: str, artifact_id: str) -> bool:
    try:
        study_store(location, study_name).remove(artifact_id)
    except ArtifactNotFound:
        return False
    return True
