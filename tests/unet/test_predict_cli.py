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
from unet.data.images import read_image, read_mask
from unet.data.masks import decode_mask
from unet.inference import predict_logits
from unet.model import build_model
from unet.predict import main as predict_main
from unet.train import main as train_main

DSB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018-nuclei"
FENCE = 1e-5  # |logit| below which float32 summation order may flip a pixel: 10x the largest gap measured


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
    # Validation ran the model in channels_last, prediction runs it contiguous: other oneDNN kernels, other
    # float32 summation orders. Their logits differ by up to 1.2e-7 here (8.6e-7 with oneDNN held to SSE4.1,
    # the logits' largest magnitude being 1.4), so a pixel whose logit lies that close to 0 may fall on
    # either side: predict's Dice reproduces the stored one up to the pixels within FENCE of the threshold
    # (one such pixel moved the Dice by 1.1e-5 on a machine where this test once failed with abs=1e-6).
    model = unet.load_model(str(model_path))
    counts = np.zeros(3, dtype=np.int64)  # tp, fp, fn of the foreground over all images
    to_wrong = np.zeros(3, dtype=np.int64)  # fence pixels now right, flipped wrong: -tp/+fn, +fp
    to_right = np.zeros(3, dtype=np.int64)  # fence pixels now wrong, flipped right: +tp/-fn, -fp
    for image_path in sorted((val / "images").iterdir()):
        logit = predict_logits(model, read_image(image_path))[0, 0].numpy()
        mask_path = val / "masks" / image_path.name
        truth = decode_mask(read_mask(mask_path), path=mask_path, num_classes=None) > 0
        pred, fence = logit > 0, np.abs(logit) < FENCE
        counts += [np.sum(pred & truth), np.sum(pred & ~truth), np.sum(~pred & truth)]
        to_wrong += [np.sum(fence & pred & truth), np.sum(fence & ~pred & ~truth), 0]
        to_right += [np.sum(fence & ~pred & truth), np.sum(fence & pred & ~truth), 0]
    tp, fp, fn = counts
    dice = 2 * tp / (2 * tp + fp + fn)
    assert float(rows["overall"]["dice"]) == pytest.approx(dice, abs=5e-7)  # the CSV keeps 6 decimals
    low = 2 * (tp - to_wrong[0]) / (2 * tp + fp + fn + to_wrong[1] - to_wrong[0])
    high = 2 * (tp + to_right[0]) / (2 * tp + fp + fn - to_right[1] + to_right[0])
    assert low <= stored <= high, f"stored {stored} outside [{low}, {high}] reachable by the fence pixels"
    assert high - low < 2e-3  # few pixels lie on the fence: the bound stays tight
    printed = capsys.readouterr().out.split("overall Dice ")[1].split(",")[0]
    assert float(printed) == pytest.approx(dice, abs=5e-5)
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
