"""Where trial checkpoints live: Optuna artifact stores, one key prefix per study.

The location comes from the study file's ``artifacts.path``: a folder (``FileSystemArtifactStore``) or
``s3://bucket[/prefix]`` (``Boto3ArtifactStore``, when boto3 is installed). Without it, a SQLite store
keeps them in the folder ``<db stem>-artifacts/`` beside the database; a server store (PostgreSQL,
MySQL) keeps none, since its workers may share no folder: name one (a shared folder or a bucket).

Every study's files are under ``<location>/<study name>/<artifact id>``, so deleting a study's folder (or
prefix) removes all its checkpoints, and no other study's. Optuna knows the artifacts by id only; the
``StudyPrefixed`` wrapper adds the study's prefix and ``DashboardArtifacts`` finds it again for the
dashboard from the study index (``search.outcome.CHECKPOINTS``).

A folder's files appear whole or not at all (written under a temporary name, renamed into place, removed
when the write fails), and ``probe_location`` writes and removes a file at start-up: a read-only or full
folder is refused before any trial (as root, ``os.access`` says yes to a read-only mount).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from search.outcome import checkpoint_index
from search.store.location import StoreLocation, location_of

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

S3_SCHEME = "s3://"
ARTIFACT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")  # Optuna's ids are UUIDs
# The name a folder store gives a file while it is written (renamed to the artifact id when whole).
PARTIAL_SUFFIX = ".partial"
# Bytes the start-up probe writes: a folder with less room fails there rather than in a trial.
PROBE_BYTES = 4096


class ArtifactsError(ValueError):
    """The artifact location cannot be used; the message says why and what to do."""


def default_location(store: StoreLocation) -> str | None:
    """``<db stem>-artifacts`` beside a SQLite database; None (no checkpoints) for a server store."""
    db = store.sqlite_path
    if db is None:
        return None
    db = db.expanduser().resolve()
    return str(db.with_name(f"{db.stem}-artifacts"))


def store_default_location(storage: optuna.storages.BaseStorage) -> str | None:
    """:func:`default_location` of a store opened by ``open_storage`` (also read-only), from the location
    its engine carries (:func:`search.store.location.location_of`); None for a store without an engine.

    Raises:
        ValueError: the store's engine was not opened by ``open_storage``.
    """
    # optuna.load_study(storage=...) wraps the RDBStorage in a cache that does not pass ``engine`` on.
    backend = getattr(storage, "_backend", storage)
    engine = getattr(backend, "engine", None)
    return default_location(location_of(engine)) if engine is not None else None


def resolve_location(path: str | None, store: StoreLocation) -> str | None:
    """The study file's ``artifacts.path``, or the default for the store (see the module docstring)."""
    return path if path is not None else default_location(store)


def open_location(location: str) -> ArtifactStore:
    """The artifact store at ``location`` (a folder, created if missing, or ``s3://bucket[/prefix]``).

    Raises:
        ArtifactsError: an S3 location without boto3 installed, or a folder that cannot be created.
    """
    if location.startswith(S3_SCHEME):
        bucket, _, prefix = location[len(S3_SCHEME) :].partition("/")
        if not bucket:
            raise ArtifactsError(f"artifacts.path {location!r} names no bucket: use s3://BUCKET[/prefix]")
        try:
            import boto3  # noqa: F401  (optional: only S3 locations need it)
        except ImportError as e:
            raise ArtifactsError(
                f"artifacts.path {location!r} is on S3 but boto3 is not installed: pip install boto3, "
                f"or use a folder"
            ) from e
        from optuna.artifacts import Boto3ArtifactStore

        store: ArtifactStore = Boto3ArtifactStore(bucket)
        return _Prefixed(store, prefix.strip("/")) if prefix.strip("/") else store
    folder = Path(location)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArtifactsError(
            f"artifacts.path {location!r} cannot be created ({e.strerror}): choose a writable folder"
        ) from e
    return _Folder(folder)


def probe_location(location: str) -> None:
    """Open ``location`` and, for a folder, write and remove a small file in it.

    Raises:
        ArtifactsError: the location cannot be opened, or the folder cannot be written (read-only, full).
    """
    open_location(location)
    if location.startswith(S3_SCHEME):
        return  # a bucket's permissions show at the first upload, which warns and loses only that file
    probe = Path(location) / f".probe-{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
    try:
        _write_probe(probe)
    except OSError as e:
        with contextlib.suppress(OSError):
            probe.unlink()
        raise ArtifactsError(
            f"the checkpoint folder {location!r} cannot be written ({e.strerror or e}): make it writable "
            f"or free space, or set artifacts.path in the study file to another folder "
            f"(artifacts.keep_top_k: 0 keeps none)"
        ) from e
    probe.unlink()


def _write_probe(path: Path) -> None:
    with open(path, "wb") as f:
        f.write(b"\0" * PROBE_BYTES)
        f.flush()
        os.fsync(f.fileno())


def study_files(location: str, study_name: str) -> list[Path] | None:
    """The files in one study's folder (None for an S3 location, whose keys are not listed)."""
    if location.startswith(S3_SCHEME):
        return None
    folder = Path(location) / study_name
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def study_store(location: str, study_name: str) -> ArtifactStore:
    """The store for one study's checkpoints: keys under ``<study name>/``, ids checked (``checked_id``)."""
    if not location.startswith(S3_SCHEME):
        (Path(location) / study_name).mkdir(parents=True, exist_ok=True)
    return _Prefixed(open_location(location), study_name, check_ids=True)


def checked_id(artifact_id: str) -> str:
    """An artifact id as Optuna makes them (a UUID): one key part, so it stays in its study's folder.

    Raises:
        ArtifactsError: anything else (a path such as ``../other-study/<id>``: a tampered index).
    """
    if not isinstance(artifact_id, str) or not ARTIFACT_ID.fullmatch(artifact_id):
        raise ArtifactsError(
            f"artifact id {artifact_id!r} is not one Optuna makes (letters, digits and '-'): the study's "
            f"checkpoint index was changed by hand; it names no checkpoint of this study"
        )
    return artifact_id


def study_folder(location: str, study_name: str) -> str:
    """Where one study's checkpoints are: the folder (or S3 prefix) to remove with the study."""
    return f"{location.rstrip('/')}/{study_name}"


class _Folder:
    """Optuna's folder store whose files appear whole: written as ``<id>.partial``, then renamed."""

    def __init__(self, folder: Path) -> None:
        self.inner = FileSystemArtifactStore(folder)
        self.folder = folder

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self.inner.open_reader(artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        target = self.folder / artifact_id
        if os.path.commonpath([self.folder.resolve(), target.resolve()]) != str(self.folder.resolve()):
            raise ValueError(f"Invalid artifact_id: {artifact_id}")
        partial = target.with_name(target.name + PARTIAL_SUFFIX)
        try:
            with open(partial, "wb") as f:
                shutil.copyfileobj(content_body, f)
                f.flush()
                os.fsync(f.fileno())
            partial.replace(target)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise

    def remove(self, artifact_id: str) -> None:
        self.inner.remove(artifact_id)


class _Prefixed:
    """An artifact store whose keys are ``prefix/<artifact id>`` in another store."""

    def __init__(self, inner: ArtifactStore, prefix: str, *, check_ids: bool = False) -> None:
        self.inner = inner
        self.prefix = prefix
        self.check_ids = check_ids  # a study's store: ids must be Optuna's (``checked_id``)

    def _key(self, artifact_id: str) -> str:
        return f"{self.prefix}/{checked_id(artifact_id) if self.check_ids else artifact_id}"

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self.inner.open_reader(self._key(artifact_id))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.inner.write(self._key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self.inner.remove(self._key(artifact_id))


class DashboardArtifacts:
    """One artifact store for the dashboard over every study's kept checkpoints in ``storage``.

    The dashboard asks by artifact id only; the study (and so the key prefix and the location) is looked
    up in the studies' checkpoint indexes.
    """

    def __init__(self, storage: optuna.storages.BaseStorage) -> None:
        self.storage = storage

    def _find(self, artifact_id: str) -> ArtifactStore:
        # Imported here: keep imports this module (the index and where its entries are live there).
        from search.checkpoints.keep import kept

        for summary in self.storage.get_all_studies():
            if not any(e.get("artifact_id") == artifact_id for e in checkpoint_index(summary)):
                continue
            for entry in kept(self.storage, summary.study_name):
                if entry["artifact_id"] == artifact_id and entry["location"] is not None:
                    return study_store(entry["location"], summary.study_name)
        raise ArtifactNotFound(f"artifact {artifact_id} is not a kept checkpoint of any study")

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._find(artifact_id).open_reader(artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        raise ArtifactNotFound("the dashboard does not upload checkpoints")

    def remove(self, artifact_id: str) -> None:
        self._find(artifact_id).remove(artifact_id)
