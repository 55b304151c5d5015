"""python -m unet.predict end to end on real images of odd sizes, and the load_model/predict API.

A model trained by ``python -m unet.train`` with a separate validation folder is applied to that folder
with ``--masks``: the overall Dice must be the validation Dice stored in model.pt, since prediction and
validation share the whole-image path (tiles blended for images larger than the patch).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import unet
from unet.checkpoint import load_checkpoint, save_checkpoint
from unet.config import ModelConfig, TrainConfig
from unet.data.images import read_image
from unet.model import build_model
from unet.predict import main as predict_main
from unet.train import main as train_main

DSB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018-nuclei"


def _stems_by_size() -> dict[tuple[int, ...], list[str]]:
    by_size: dict[tuple[int, ...], list[str]] = {}
    for path in sorted((DSB / "images").iterdir()):
        by_size.setdefault(cv2.imread(str(path)).shape[:2], []).append(path.stem)
    return by_size


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A model trained on 6 dsb2018 images and validated on 3 of odd sizes: 256x320, 260x347, 360x360."""
    root = tmp_path_factory.mktemp("dsb")
    by_size = _stems_by_size()
    parts = {
        "train": by_size[(256, 256)][:6],
        "val": [by_size[(256, 320)][0], by_size[(260, 347)][0], by_size[(360, 360)][0]],
    }
    for part, stems in parts.items():
        for sub in ("images", "masks"):
            (root / part / sub).mkdir(parents=True)
            for stem in stems:
                shutil.copy(DSB / sub / f"{stem}.png", root / part / sub)
    out = root / "run"
    argv = ["--data", str(root / "train"), "--val", str(root / "val"), "--out", str(out), "--quiet"]
    tiny = ["--patch-size", "128", "--epochs", "2", "--depth", "2", "--filters", "4", "--batch-size", "3"]
    assert train_main([*argv, *tiny]) == 0
    return out / "model.pt", root / "val"


def test_predict_with_masks_reproduces_the_validation_dice(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_path, val = trained
    out = tmp_path / "pred"
    argv = ["--model", str(model_path), "--images", str(val / "images"), "--masks", str(val / "masks")]
    assert predict_main([*argv, "--out", str(out), "--quiet"]) == 0
    with (out / "scores.csv").open() as f:
        rows = {row["image"]: row for row in csv.DictReader(f)}
    stored = load_checkpoint(model_path).metrics["val_dice"]
    assert float(rows["overall"]["dice"]) == pytest.approx(stored, abs=1e-6)
    assert f"overall Dice {stored:.4f}" in capsys.readouterr().out
    for stem in (p.stem for p in (val / "images").iterdir()):
        mask = cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        image = read_image(val / "images" / f"{stem}.png")
        assert mask.shape == image.shape[:2] and set(np.unique(mask).tolist()) <= {0, 255}
        assert int(rows[stem]["pixels"]) == mask.size
        # The Python API gives the same mask as the command line.
        np.testing.assert_array_equal(unet.predict(unet.load_model(str(model_path)), image) * 255, mask)


def test_tta_writes_masks_of_the_same_size(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model_path, val = trained
    out = tmp_path / "tta"
    assert predict_main(["--model", str(model_path), "--images", str(val / "images"), "--out", str(out)]) == 0
    assert sorted(p.stem for p in out.iterdir()) == sorted(p.stem for p in (val / "images").iterdir())


def test_images_the_model_cannot_take_fail_before_any_mask(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = TrainConfig(model=ModelConfig(in_channels=1, num_classes=1, depth=2, base_filters=4))
    model = build_model(config.model)
    path = tmp_path / "gray.pt"
    save_checkpoint(
        path, state_dict=model.state_dict(), config=config, epoch=1, metrics={}, plan=None, normalization=None
    )
    out = tmp_path / "out"
    assert predict_main(["--model", str(path), "--images", str(DSB / "images"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "channel(s) but the model takes 1" in err and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
    assert predict_main(["--model", str(tmp_path / "no.pt"), "--images", str(DSB), "--out", str(out)]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err


def test_unet_predict_stays_the_function_after_the_cli_is_imported() -> None:
    assert callable(unet.predict) and unet.predict.__module__ == "unet.inference"
