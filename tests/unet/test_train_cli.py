"""python -m unet.train: what a run writes, and bad input as one line with exit status 2."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from unet.checkpoint import load_checkpoint
from unet.data import split_with_test
from unet.data.heldout import held_out_dataset, held_out_pairs
from unet.history import EPOCH_FIELDS
from unet.train import main
from unet.validation import evaluate

DSB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018-nuclei"
TINY = ["--epochs", "2", "--depth", "2", "--filters", "4", "--batch-size", "4", "--quiet"]


def test_synthetic_run_writes_checkpoint_config_and_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "--data",
        "synthetic",
        "--synthetic-size",
        "32",
        "--synthetic-train",
        "16",
        "--synthetic-val",
        "8",
    ]
    assert main([*argv, *TINY, "--out", str(out)]) == 0
    assert "best val Dice" in capsys.readouterr().out
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["epochs"] == 2 and config["model"]["depth"] == 2 and config["model"]["in_channels"] == 1
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert tuple(rows[0]) == EPOCH_FIELDS
    state = torch.load(out / "model.pt", weights_only=False)
    assert state["config"] == config and len(state["history"]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "last.pt", "metrics.csv", "model.pt"]


def test_folder_run_on_real_data(tmp_path):
    out = tmp_path / "run"
    assert main(["--data", str(DSB), "--patch-size", "64", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["in_channels"] == 3  # RGBA read as RGB


def test_a_test_fraction_is_held_out_and_scored_once_with_model_pt(tmp_path, capsys):
    data = tmp_path / "data"
    stems = sorted(p.stem for p in (DSB / "images").iterdir())[:8]
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
        for stem in stems:
            shutil.copy(DSB / sub / f"{stem}.png", data / sub)
    out = tmp_path / "run"
    argv = ["--data", str(data), "--patch-size", "32", "--test-fraction", "0.25", *TINY, "--out", str(out)]
    assert main(argv) == 0
    scores = json.loads((out / "test.json").read_text())
    assert scores["images"] == 2 and 0 <= scores["test_dice"] <= 1
    assert f"held-out test Dice {scores['test_dice']:.4f} on 2 image(s)" in capsys.readouterr().out
    # The checkpoint scored is model.pt, and the two held-out images are the ones the split leaves out.
    held_out = split_with_test(stems, val_fraction=0.2, test_fraction=0.25, seed=0).test
    test = held_out_dataset(
        held_out_pairs(data, test_fraction=0.25), in_channels=3, patch_size=32, normalization="zscore",
        num_classes=None,
    )  # fmt: skip
    assert test.stems == held_out
    checkpoint = load_checkpoint(out / "model.pt")
    assert scores["epoch"] == checkpoint.epoch
    assert scores["test_dice"] == pytest.approx(
        evaluate(checkpoint.model, test, num_classes=1).dice, abs=1e-9
    )


def test_a_test_fraction_on_synthetic_data_or_too_few_images_exits_2(tmp_path, capsys):
    argv = ["--data", "synthetic", "--test-fraction", "0.2", *TINY, "--out", str(tmp_path / "a")]
    assert main(argv) == 2
    assert "--test-fraction 0.2 applies to folder data" in capsys.readouterr().err
    data = tmp_path / "two"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
        for stem in sorted(p.stem for p in (DSB / "images").iterdir())[:2]:
            shutil.copy(DSB / sub / f"{stem}.png", data / sub)
    assert main(["--data", str(data), "--test-fraction", "0.3", *TINY, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "too few for a training, validation and test part" in err and err.count("\n") == 1


def test_diverged_run_exits_1(tmp_path, capsys):
    argv = [
        "--data",
        "synthetic",
        "--synthetic-size",
        "32",
        "--synthetic-train",
        "16",
        "--synthetic-val",
        "8",
    ]
    assert main([*argv, *TINY, "--lr", "10", "--out", str(tmp_path / "run")]) == 1
    assert "diverged" in capsys.readouterr().err


def write_folder(root: Path, *, images: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for name, array in images.items():
        cv2.imwrite(str(root / "images" / name), array)
    for name, array in masks.items():
        cv2.imwrite(str(root / "masks" / name), array)
    return root


IMG = np.full((32, 32), 100, np.uint8)
MASK = np.zeros((32, 32), np.uint8)
MASK[8:16, 8:16] = 255


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "missing"),
        (lambda root: write_folder(root / "d", images={}, masks={}), "no image files"),
        (lambda root: write_folder(root / "d", images={"a.png": IMG}, masks={}), "no mask"),
        (lambda root: write_folder(root / "d", images={"a.png": IMG}, masks={"a.png": MASK[:16]}), "size"),
        (
            lambda root: write_folder(
                root / "d",
                images={"a.png": IMG},
                masks={"a.png": np.where(MASK > 0, 128, 7).astype(np.uint8)},
            ),
            "7",
        ),
    ],
)
def test_bad_folders_exit_2_with_one_line(tmp_path, capsys, make, message):
    data = make(tmp_path)
    assert main(["--data", str(data), *TINY, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err.lower() and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_corrupt_image_exits_2(tmp_path, capsys):
    data = write_folder(tmp_path / "d", images={"b.png": IMG}, masks={"a.png": MASK, "b.png": MASK})
    (data / "images" / "a.png").write_bytes(b"\x89PNG garbage")
    assert main(["--data", str(data), *TINY, "--out", str(tmp_path / "run")]) == 2
    assert "a.png" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--loss", "dise", "Did you mean 'dice'"), ("--norm", "bach", "Did you mean 'batch'")],
)
def test_unknown_names_exit_2_with_did_you_mean(tmp_path, capsys, flag, value, message):
    argv = [
        "--data",
        "synthetic",
        "--synthetic-size",
        "32",
        *TINY,
        flag,
        value,
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
