"""Which trials keep their best-epoch checkpoint: the top k by value, in Optuna's artifact store.

A COMPLETE trial that ranks among the study's ``keep_top_k`` best uploads its checkpoint (``model.pt``)
before it is told; the checkpoint that falls out of the top k is removed. PRUNED and FAILED trials keep
none. What is kept is recorded twice:

- the study's user attribute ``checkpoints`` (``search.outcome.CHECKPOINTS``): the kept checkpoints,
  best first, each ``{"trial", "artifact_id", "epoch", "value"}``;
- the trial's user attribute ``checkpoint`` (``search.outcome.CHECKPOINT``): ``{"artifact_id", "epoch"}``
  as uploaded (a finished trial cannot be changed, so it stays after an eviction: the index says what is
  kept).

Where: relative to the study's artifact root, ``<root>/<study name>/<artifact id>``. The study's user
attribute ``checkpoints_root`` (``search.outcome.CHECKPOINTS_ROOT``) holds the root the last run used,
null for the store's default (``<db stem>-artifacts`` beside a SQLite file, found from whichever file is
opened). So a copied store and its copied folder work on their own: the copy never evicts the original's
files. Stores written before named each entry's absolute folder (``location``): such an entry is read
under the root when its file is there, else where it says, and is only ever removed under the root.
``kept`` gives every entry its ``location`` as resolved.

The index is reconciled with the files (``reconcile``) at the start and end of every ``search.run``, and
before every upload: entries of trials that finished without COMPLETE (killed between the index and the
tell, then failed by the reaper) or whose file is gone are dropped, and every file in the study's folder
that no entry names is removed (the partial or empty files of a full disk, an upload a kill left
unrecorded). Reading, changing and writing the index, and uploading, all hold the study's claim lock, so
a sweep never meets a file being written.
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
from optuna.trial import TrialState

from search.checkpoints.paused import FILE_NAME as PAUSED_FILE_NAME
from search.checkpoints.paused import needed_states
from search.checkpoints.store import (
    S3_SCHEME,
    resolve_location,
    store_default_location,
    study_files,
    study_folder,
    study_store,
)
from search.outcome import (
    CHECKPOINT,
    CHECKPOINTS,
    CHECKPOINTS_ROOT,
    checkpoint_index,
    paused_state,
    stored_spec,
)
from search.ranking import rank_key
from search.spec.schema import StudySpec
from search.store.claims import claim_lock
from search.store.location import StoreLocation

logger = logging.getLogger(__name__)

FILE_NAME = "model.pt"
# A trial in these states keeps no checkpoint (a RUNNING one may still be told COMPLETE).
_ENDED_WITHOUT_VALUE = (TrialState.FAIL, TrialState.PRUNED)


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where a study's checkpoints go and how many it keeps."""

    location: str | None  # folder or s3://bucket[/prefix]; None: keep none
    keep_top_k: int  # checkpoints kept per study (0: none)

    @property
    def enabled(self) -> bool:
        return self.location is not None and self.keep_top_k > 0


@dataclass(frozen=True)
class Reconciled:
    """What :func:`reconcile` changed."""

    folder: str  # the study's folder (or S3 prefix)
    missing: tuple[int, ...] = ()  # trials whose kept file was gone: dropped from the index
    unfinished: tuple[int, ...] = ()  # trials that ended without COMPLETE: dropped, their files removed
    swept: tuple[str, ...] = ()  # files no entry names (partial, empty, unrecorded), removed
    paused: tuple[str, ...] = ()  # paused trials' states removed (search.checkpoints.paused)


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
    """The study's kept checkpoints, best first (the index), each with the ``location`` it is read from."""
    study_id = storage.get_study_id_from_name(study_name)
    attrs = storage.get_study_user_attrs(study_id)
    if CHECKPOINTS_ROOT in attrs:
        configured = attrs[CHECKPOINTS_ROOT]
    else:  # a store written before the root was recorded: the study file's, as stored with the study
        configured = (stored_spec(attrs) or {}).get("artifacts", {}).get("path")
    root = configured if configured is not None else store_default_location(storage)
    return [_resolved(entry, root, study_name) for entry in checkpoint_index(attrs)]


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

    Entries whose file is gone, or whose trial ended without COMPLETE, are dropped first (they hold no
    place in the top k).

    Args:
        trial: a RUNNING trial about to be told COMPLETE with ``value``.
        write: writes the checkpoint file to the given path.

    Returns:
        The artifact id, or None when the trial does not rank (or the policy keeps none).
    """
    if policy.location is None or policy.keep_top_k <= 0:
        return None
    root = policy.location
    study_id = storage.get_study_id_from_name(study_name)
    entry: dict[str, Any] = {"trial": trial.number, "epoch": int(epoch), "value": float(value)}
    entry["location"] = root
    # The index is read, changed and written under the study's lock: workers finish trials concurrently.
    with claim_lock(storage.engine, study_name):
        _record_root(storage, study_id, root)
        index, missing, unfinished = _split(storage, study_id, kept(storage, study_name), study_name)
        if missing:
            logger.warning(
                "the kept checkpoint(s) of trial(s) %s are missing from %s (deleted?): dropped from the "
                "index",
                ", ".join(f"#{e['trial']}" for e in missing),
                study_folder(root, study_name),
            )
        ranked = sorted([*index, entry], key=lambda e: rank_key(e["value"], e["trial"]))
        ranks = any(e is entry for e in ranked[: policy.keep_top_k])
        evicted = [*ranked[policy.keep_top_k :], *unfinished] if ranks else unfinished
        if ranks:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / FILE_NAME
                write(path)
                entry["artifact_id"] = upload_artifact(
                    artifact_store=study_store(root, study_name),
                    file_path=str(path),
                    study_or_trial=trial,
                )
            trial.set_user_attr(CHECKPOINT, {k: entry[k] for k in ("artifact_id", "epoch")})
            index = ranked[: policy.keep_top_k]
        if ranks or missing or unfinished:
            storage.set_study_user_attr(study_id, CHECKPOINTS, [_stored(e, root) for e in index])
        for out in evicted:
            logger.info("trial %d's checkpoint is no longer kept: removed", out["trial"])
            _remove(root, study_name, out["artifact_id"])
    return str(entry["artifact_id"]) if ranks else None


def reconcile(
    storage: optuna.storages.RDBStorage,
    study_name: str,
    policy: CheckpointPolicy,
    *,
    keep_paused: bool = True,
) -> Reconciled:
    """Make the index and the study's files agree (see the module docstring); the index keeps at most
    ``keep_top_k`` entries. Paused trials' states (``search.checkpoints.paused``) that a continuation may
    still need are kept unless ``keep_paused`` is false (the end of a study's last run: they are swept)."""
    root = policy.location
    if root is None:
        raise ValueError("reconcile needs a checkpoint location")
    study_id = storage.get_study_id_from_name(study_name)
    with claim_lock(storage.engine, study_name):
        _record_root(storage, study_id, root)
        index = kept(storage, study_name)
        live, missing, unfinished = _split(storage, study_id, index, study_name)
        live = live[: policy.keep_top_k]
        if len(live) != len(index):
            storage.set_study_user_attr(study_id, CHECKPOINTS, [_stored(e, root) for e in live])
        named = {e["artifact_id"] for e in live}
        trials = storage.get_all_trials(study_id, deepcopy=False)
        if keep_paused:
            named |= needed_states(trials)
        swept = _sweep(storage, study_id, study_name, root, named)
        states = {artifact_id for t in trials if (artifact_id := paused_state(t.user_attrs)) is not None}
    return Reconciled(
        folder=study_folder(root, study_name),
        missing=tuple(e["trial"] for e in missing),
        unfinished=tuple(e["trial"] for e in unfinished),
        swept=tuple(name for name in swept if name not in states),
        paused=tuple(name for name in swept if name in states),
    )


def download(entry: dict[str, Any], study_name: str, path: Path) -> None:
    """Copy a kept checkpoint (an entry of :func:`kept`) to ``path``.

    Raises:
        ArtifactNotFound: the file is gone from its location (or the study has none).
    """
    if entry.get("location") is None:
        raise ArtifactNotFound(f"trial {entry['trial']}'s checkpoint has no location: the store keeps none")
    download_artifact(
        artifact_store=study_store(entry["location"], study_name),
        file_path=str(path),
        artifact_id=entry["artifact_id"],
    )


def _record_root(storage: optuna.storages.BaseStorage, study_id: int, root: str) -> None:
    """Record the run's root for the readers of the index: null when it is the store's default."""
    recorded = None if root == store_default_location(storage) else root
    attrs = storage.get_study_user_attrs(study_id)
    if CHECKPOINTS_ROOT not in attrs or attrs[CHECKPOINTS_ROOT] != recorded:
        storage.set_study_user_attr(study_id, CHECKPOINTS_ROOT, recorded)


def _resolved(entry: dict[str, Any], root: str | None, study_name: str) -> dict[str, Any]:
    recorded = entry.get("location")  # an absolute folder, in stores written before relative locations
    if recorded is None or recorded == root:
        return {**entry, "location": root}
    if root is not None and _exists(root, study_name, entry["artifact_id"]):
        return {**entry, "location": root}  # the store was copied with its folder
    return {**entry, "location": recorded}


def _stored(entry: dict[str, Any], root: str) -> dict[str, Any]:
    """An entry as the index holds it: a location only where it is not the root (an older store's)."""
    stored = {k: v for k, v in entry.items() if k != "location"}
    if entry.get("location") not in (None, root):
        stored["location"] = entry["location"]
    return stored


def _split(
    storage: optuna.storages.BaseStorage, study_id: int, index: list[dict[str, Any]], study_name: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The entries that stand, those whose file is gone, and those whose trial ended without COMPLETE."""
    live, missing, unfinished = [], [], []
    for entry in index:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, entry["trial"])
        if storage.get_trial(trial_id).state in _ENDED_WITHOUT_VALUE:
            unfinished.append(entry)
        elif entry["location"] is None or not _exists(entry["location"], study_name, entry["artifact_id"]):
            missing.append(entry)
        else:
            live.append(entry)
    return live, missing, unfinished


def _exists(location: str, study_name: str, artifact_id: str) -> bool:
    if not location.startswith(S3_SCHEME):
        return (Path(location) / study_name / artifact_id).is_file()
    try:
        study_store(location, study_name).open_reader(artifact_id).close()
    except ArtifactNotFound:
        return False
    return True


def _sweep(
    storage: optuna.storages.BaseStorage, study_id: int, study_name: str, root: str, named: set[str]
) -> list[str]:
    """Remove the study's files under ``root`` that no entry names; returns their names."""
    removed = []
    files = study_files(root, study_name)
    if files is not None:
        for path in files:
            if path.name not in named:
                try:
                    path.unlink(missing_ok=True)
                except OSError as e:  # e.g. the folder became read-only: the next run tries again
                    logger.warning("%s could not be removed: %s", path, e.strerror or e)
                    continue
                removed.append(path.name)
        return removed
    # An S3 prefix is not listed: the uploads Optuna recorded are.
    for trial in storage.get_all_trials(study_id, deepcopy=False):
        for meta in get_all_artifact_meta(trial, storage=storage):
            ours = meta.filename in (FILE_NAME, PAUSED_FILE_NAME)
            orphan = ours and meta.artifact_id not in named
            if orphan and _remove(root, study_name, meta.artifact_id):
                removed.append(meta.artifact_id)
    return removed


def _remove(location: str, study_name: str, artifact_id: str) -> bool:
    try:
        study_store(location, study_name).remove(artifact_id)
    except ArtifactNotFound:
        return False
    return True
