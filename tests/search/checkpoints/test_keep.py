"""Top-k trial checkpoints in Optuna's artifact store: kept, evicted, swept, found by the dashboard."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import upload_artifact

from search.checkpoints.keep import (
    CheckpointPolicy,
    Reconciled,
    download,
    keep_checkpoint,
    kept,
    reconcile,
)
from search.checkpoints.store import (
    ArtifactsError,
    DashboardArtifacts,
    default_location,
    open_location,
    study_store,
)
from search.outcome import CHECKPOINT, CHECKPOINTS
from search.store.engine import open_storage
from search.store.location import StoreLocation


@pytest.fixture
def storage(tmp_path: Path) -> optuna.storages.RDBStorage:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return open_storage(f"sqlite:///{tmp_path / 'store.db'}")


def finish(
    study: optuna.Study, storage: optuna.storages.RDBStorage, policy: CheckpointPolicy, value: float
) -> tuple[int, str | None]:
    """Run one trial to COMPLETE with ``value``, keeping its checkpoint as execute_trial does."""
    trial = study.ask()

    def write(path: Path) -> None:
        path.write_text(json.dumps({"trial": trial.number, "value": value}))

    artifact = keep_checkpoint(
        storage, study.study_name, trial, policy=policy, value=value, epoch=3, write=write
    )
    study.tell(trial, value)
    return trial.number, artifact


def files(location: Path, study: str) -> set[str]:
    folder = location / study
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_only_the_top_k_keep_a_checkpoint(storage, tmp_path: Path) -> None:
    location = tmp_path / "artifacts"
    policy = CheckpointPolicy(str(location), keep_top_k=2)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    results = {value: finish(study, storage, policy, value) for value in (0.5, 0.7, 0.6, 0.4, 0.8)}
    assert results[0.4][1] is None  # never in the top 2: nothing uploaded
    index = kept(storage, "s")
    assert [(e["trial"], e["value"]) for e in index] == [(4, 0.8), (1, 0.7)]
    # Exactly the kept files exist: 0.5 and 0.6 were evicted when better trials came.
    assert files(location, "s") == {e["artifact_id"] for e in index}
    assert reconcile(storage, "s", policy) == Reconciled(folder=str(location / "s"))
    # Each trial says what it uploaded; the kept one downloads intact.
    trial = study.trials[4]
    assert trial.user_attrs[CHECKPOINT] == {"artifact_id": index[0]["artifact_id"], "epoch": 3}
    # The index holds no folder: its entries are read under the study's root.
    assert all("location" not in e for e in study.user_attrs[CHECKPOINTS])
    assert {e["location"] for e in index} == {str(location)}
    download(index[0], "s", tmp_path / "got.pt")
    assert json.loads((tmp_path / "got.pt").read_text()) == {"trial": 4, "value": 0.8}


def test_equal_values_keep_the_earlier_trial(storage, tmp_path: Path) -> None:
    policy = CheckpointPolicy(str(tmp_path / "a"), keep_top_k=1)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    finish(study, storage, policy, 0.5)
    assert finish(study, storage, policy, 0.5)[1] is None
    assert [e["trial"] for e in kept(storage, "s")] == [0]


def test_no_location_or_k_zero_keeps_nothing(storage, tmp_path: Path) -> None:
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    assert finish(study, storage, CheckpointPolicy(None, keep_top_k=3), 0.9)[1] is None
    assert finish(study, storage, CheckpointPolicy(str(tmp_path / "a"), keep_top_k=0), 0.9)[1] is None
    assert CHECKPOINTS not in study.user_attrs and not (tmp_path / "a").exists()


def test_a_file_the_index_does_not_name_is_swept(storage, tmp_path: Path) -> None:
    # A worker that died between its upload and the index update.
    location = tmp_path / "artifacts"
    policy = CheckpointPolicy(str(location), keep_top_k=1)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    finish(study, storage, policy, 0.5)
    lost = study.ask()
    (tmp_path / "model.pt").write_bytes(b"weights")
    orphan = upload_artifact(
        artifact_store=study_store(str(location), "s"),
        file_path=str(tmp_path / "model.pt"),
        study_or_trial=lost,
    )
    study.tell(lost, state=optuna.trial.TrialState.FAIL)
    assert orphan in files(location, "s")
    assert reconcile(storage, "s", policy).swept == (orphan,)
    assert files(location, "s") == {kept(storage, "s")[0]["artifact_id"]}


def test_the_dashboard_store_finds_any_studys_checkpoint(storage, tmp_path: Path) -> None:
    for name in ("a", "b"):
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        finish(study, storage, CheckpointPolicy(str(tmp_path / name), keep_top_k=1), 0.5)
    entry = kept(storage, "b")[0]
    with DashboardArtifacts(storage).open_reader(entry["artifact_id"]) as f:
        assert json.loads(f.read()) == {"trial": 0, "value": 0.5}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///{tmp}/runs/search.db", "{tmp}/runs/search-artifacts"),
        ("postgresql+psycopg://u@host/db", None),
        ("mysql+pymysql://root@host/db", None),
    ],
)
def test_default_location(tmp_path: Path, url: str, expected: str | None) -> None:
    want = expected.format(tmp=tmp_path) if expected else None
    assert default_location(StoreLocation.parse(url.format(tmp=tmp_path))) == want


def test_bad_locations_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ArtifactsError, match="cannot be created"):
        open_location(str(tmp_path / "file" / "sub"))
    with pytest.raises(ArtifactsError, match="names no bucket"):
        open_location("s3://")
