"""Held-out test data: scored once after the search on the best kept trials, disjoint from training."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from test_run import DSB, study_file

from search import run
from search.checkpoints.keep import download, kept
from search.execution.data import load_study_data
from search.execution.testset import load_test_set
from search.outcome import stored_test_scores
from search.report.cli import main as report_main
from search.spec.schema import StudySpec
from search.store.engine import open_storage
from unet.checkpoint import load_checkpoint
from unet.validation import evaluate


def search(tmp_path: Path, path: Path, capsys) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert run.main(["--study", str(path), "--storage", url, "--backend", "local"]) == 0
    return url, capsys.readouterr().out


def test_the_best_trials_are_scored_on_synthetic_test_images(tmp_path: Path, capsys) -> None:
    data = {"source": "synthetic", "synthetic": {"n_train": 16, "n_val": 8, "n_test": 6, "size": 32}}
    path = study_file(tmp_path, "tested", data=data, test={"top_k": 2})
    url, out = search(tmp_path, path, capsys)
    study = optuna.load_study(study_name="tested", storage=url)
    scores = stored_test_scores(study)
    index = kept(open_storage(url), "tested")
    assert sorted(scores) == sorted(str(e["trial"]) for e in index[:2])
    best = study.best_trial
    assert scores[str(best.number)]["val_dice"] == pytest.approx(best.value)
    assert f"held-out test Dice {scores[str(best.number)]['test_dice']:.4f} on 6 image(s)" in out
    # The stored score is the kept checkpoint's Dice on every pixel of the test images.
    spec = StudySpec.from_dict(study.user_attrs["spec"])
    test = load_test_set(spec, load_study_data(spec))
    assert test is not None and len(test) == 6
    download(index[0], "tested", tmp_path / "model.pt")
    checkpoint = load_checkpoint(tmp_path / "model.pt")
    dice = evaluate(checkpoint.model, test, num_classes=1).dice
    assert scores[str(index[0]["trial"])]["test_dice"] == pytest.approx(dice, abs=1e-9)
    # The test images come from a stream of their own: none is a training or validation image.
    study_data = load_study_data(spec)
    seen = {image.numpy().tobytes() for image, _ in study_data.val}
    assert all(image.numpy().tobytes() not in seen for image, _ in test)


def dataset(root: Path, stems: list[str]) -> Path:
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
        for stem in stems:
            shutil.copy(DSB / sub / f"{stem}.png", root / sub / f"{stem}.png")
    return root


def test_a_test_folder_must_be_held_out(tmp_path: Path, capsys) -> None:
    stems = sorted(p.stem for p in (DSB / "images").iterdir())[:10]
    train = dataset(tmp_path / "train", stems[:7])
    same = study_file(
        tmp_path, "same", data={"source": "folder", "folder": {"path": str(train), "test_path": str(train)}}
    )
    assert run.main(["--study", str(same), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 2
    assert "test_path" in capsys.readouterr().err
    copied = dataset(tmp_path / "copied", stems[6:9])  # stems[6] is a training image
    overlap = study_file(
        tmp_path,
        "overlap",
        data={"source": "folder", "folder": {"path": str(train), "test_path": str(copied)}},
    )
    assert run.main(["--study", str(overlap), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 2
    err = capsys.readouterr().err
    assert f"{stems[6]}.png is also" in err and err.count("\n") == 1
    assert not (tmp_path / "s.db").exists()


@pytest.mark.slow
def test_a_test_folder_scores_the_winner_on_real_images(tmp_path: Path, capsys) -> None:
    stems = sorted(p.stem for p in (DSB / "images").iterdir())[:12]
    train, test = dataset(tmp_path / "train", stems[:9]), dataset(tmp_path / "test", stems[9:])
    folder = {"path": str(train), "test_path": str(test), "patch_size": 64}
    path = study_file(
        tmp_path,
        "dsb-tested",
        data={"source": "folder", "folder": folder},
        budget={"n_trials": 1, "max_epochs": 1},
    )
    url, out = search(tmp_path, path, capsys)
    scores = optuna.load_study(study_name="dsb-tested", storage=url).user_attrs["test_scores"]
    assert list(scores) == ["0"] and scores["0"]["images"] == 3
    assert 0 <= scores["0"]["test_dice"] <= 1 and "held-out test Dice" in out


@pytest.mark.slow
def test_a_test_fraction_is_held_out_scored_and_reported(tmp_path: Path, capsys) -> None:
    stems = sorted(p.stem for p in (DSB / "images").iterdir())[:12]
    root = dataset(tmp_path / "data", stems)
    folder = {"path": str(root), "test_fraction": 0.25, "patch_size": 64}
    path = study_file(
        tmp_path,
        "dsb-split",
        data={"source": "folder", "folder": folder},
        budget={"n_trials": 2, "max_epochs": 1},
    )
    url, out = search(tmp_path, path, capsys)
    study = optuna.load_study(study_name="dsb-split", storage=url)
    scores = stored_test_scores(study)
    best = study.best_trial
    assert list(scores) == [str(best.number)] and scores[str(best.number)]["images"] == 3
    assert f"held-out test Dice {scores[str(best.number)]['test_dice']:.4f} on 3 image(s)" in out
    # Recorded with the study, and the three parts are disjoint: the test images trained or validated nothing.
    spec = StudySpec.from_dict(study.user_attrs["spec"])
    assert spec.data.folder is not None and spec.data.folder.test_fraction == 0.25
    data = load_study_data(spec)
    test = load_test_set(spec, data)
    assert test is not None
    held_out = set(test.stems)  # type: ignore[attr-defined]
    assert len(held_out) == 3 and not held_out & set(data.train.stems + data.val.stems)  # type: ignore[union-attr]
    assert sorted(held_out | set(data.train.stems) | set(data.val.stems)) == stems  # type: ignore[union-attr]
    # The report shows the test score beside the validation score.
    assert report_main(["--storage", url, "--out", str(tmp_path / "r"), "--study", "dsb-split"]) == 0
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert f"Held-out test Dice {scores[str(best.number)]['test_dice']:.4f}" in summary
    assert "| test Dice |" in summary


def test_a_folder_too_small_for_a_test_share_is_one_line(tmp_path: Path, capsys) -> None:
    root = dataset(tmp_path / "two", sorted(p.stem for p in (DSB / "images").iterdir())[:2])
    folder = {"path": str(root), "test_fraction": 0.3}
    path = study_file(tmp_path, "two", data={"source": "folder", "folder": folder})
    assert run.main(["--study", str(path), "--storage", f"sqlite:///{tmp_path / 's.db'}"]) == 2
    err = capsys.readouterr().err
    assert "2 image(s) are too few for a training, validation and test part" in err
    assert "lower test_fraction" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "s.db").exists()
