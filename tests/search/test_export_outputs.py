"""python -m search.export under faults and bad arguments, on every store: one line, exit 2, nothing mixed.

Issue 22: an export into an existing folder on a full disk left trial 2's ``model.pt`` beside trial 0's
``model.ts``, ``config.yaml`` and ``source.yaml`` (case 8); ``--out`` a file, under a file, read-only or
on a full disk gave tracebacks (case 9); a tampered ``artifact_id`` in the study's checkpoint index
(``../other-study/<id>``) exported another study's model, and ``../../../../etc/passwd`` was a traceback
(case 10). The studies are crafted (two COMPLETE trials that keep their checkpoints through
``keep_checkpoint``), so each backend costs seconds.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from output_cases import BAD_DESTINATIONS, FOREIGN_FILES, bad_destination, snapshot
from test_report import spec_dict

from search import export
from search.checkpoints.keep import CheckpointPolicy, keep_checkpoint, kept
from search.outcome import CHECKPOINTS
from search.store.engine import open_storage
from unet.checkpoint import save_checkpoint
from unet.config import ModelConfig, TrainConfig
from unet.model import build_model

VALUES = (0.5, 0.7)  # trial 1 is the best


def _craft(url: str, name: str, artifacts: Path) -> None:
    """A study whose two COMPLETE trials keep a checkpoint each (trial n's ``epoch`` is n + 1)."""
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    study.set_user_attr("spec", spec_dict(name))
    policy = CheckpointPolicy(location=str(artifacts), keep_top_k=2)
    config = TrainConfig(model=ModelConfig(in_channels=1, num_classes=1, depth=2, base_filters=4))
    for number, value in enumerate(VALUES):
        trial = study.ask()
        model = build_model(config.model)

        def write(path: Path, model=model, number=number) -> None:  # type: ignore[no-untyped-def]
            state, epoch = model.state_dict(), number + 1
            save_checkpoint(
                path, state_dict=state, config=config, epoch=epoch, metrics={}, plan=None, normalization=None
            )

        keep_checkpoint(storage, name, trial, policy=policy, value=value, epoch=number + 1, write=write)
        study.tell(trial, value)
    storage.remove_session()
    storage.engine.dispose()


@pytest.fixture
def crafted(storage_url: str, tmp_path: Path) -> str:
    _craft(storage_url, "crafted", tmp_path / "artifacts")
    return storage_url


def _export(url: str, out: Path, *extra: str, study: str = "crafted") -> int:
    return export.main(["--study", study, "--storage", url, "--out", str(out), *extra])


def _one_line_error(capsys: pytest.CaptureFixture[str], *parts: str) -> None:
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    for part in parts:
        assert part in captured.err, captured.err
    assert captured.out == ""


def test_a_disk_filling_up_leaves_the_earlier_export_whole(
    crafted: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Case 8: trial 0 exported, then the best trial into the same folder with the disk full part way.
    out = tmp_path / "exports" / "model"
    assert _export(crafted, out, "--trial", "0") == 0
    assert yaml.safe_load((out / "source.yaml").read_text())["trial"] == 0
    before = snapshot(out.parent)
    real = export.write_atomic

    def full(path: Path, *args: object, **kwargs: object) -> None:
        if path.name == "config.yaml":  # after model.pt and model.ts were written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(export, "write_atomic", full)
    capsys.readouterr()
    assert _export(crafted, out) == 2
    _one_line_error(capsys, f"--out {out} was not written (No space left on device; it is left as it was)")
    assert snapshot(out.parent) == before  # trial 0's files, all of them, and no leftovers
    monkeypatch.setattr(export, "write_atomic", real)
    assert _export(crafted, out) == 0
    assert yaml.safe_load((out / "source.yaml").read_text())["trial"] == 1
    assert [p.name for p in out.parent.iterdir()] == ["model"]


@pytest.mark.parametrize(
    ("case", "message"),
    [*BAD_DESTINATIONS, FOREIGN_FILES],
)
def test_a_bad_destination_is_one_line_exit_2_and_nothing_written(
    crafted: str,
    tmp_path: Path,
    fail_writes_under: Callable[[Path, int], None],
    capsys: pytest.CaptureFixture[str],
    case: str,
    message: str,
) -> None:
    # Case 9: each was a traceback (the foreign files would have been mixed with the model's).
    place = tmp_path / "dest"
    place.mkdir()
    out = bad_destination(place, case, fail_writes_under)
    before = snapshot(place)
    assert _export(crafted, out) == 2
    _one_line_error(capsys, message)
    assert snapshot(place) == before and {p.name for p in place.iterdir()} <= {"out", "file"}


@pytest.mark.parametrize("tampered", ["../other/{id}", "../../../../etc/passwd", "..", "."])
def test_a_tampered_artifact_id_is_refused(
    crafted: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], tampered: str
) -> None:
    # Case 10: '../other/<id>' exported the other study's model; '../../../../etc/passwd' was a traceback.
    _craft(crafted, "other", tmp_path / "artifacts")
    storage = open_storage(crafted)
    other_id = kept(storage, "other")[0]["artifact_id"]
    index = kept(storage, "crafted")
    best = next(e for e in index if e["trial"] == 1)
    best["artifact_id"] = tampered.format(id=other_id)
    study_id = storage.get_study_id_from_name("crafted")
    storage.set_study_user_attr(study_id, CHECKPOINTS, index)
    storage.remove_session()
    storage.engine.dispose()
    out = tmp_path / "out"
    assert _export(crafted, out) == 2
    _one_line_error(
        capsys, "the checkpoint of trial #1 cannot be read", "the study's checkpoint index was changed"
    )
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
