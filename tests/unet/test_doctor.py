"""The dataset doctor: the real dataset passes with its notes, broken folders fail with the right finding."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from unet.data import folder_datasets, split_with_test
from unet.data.problems import DataProblem
from unet.doctor import Report, inspect_folder
from unet.doctor.cli import main


@pytest.fixture(scope="module")
def dsb2018() -> Path:
    """The shared real dataset: 59 RGBA microscopy PNGs of nine sizes, masks exactly {0, 255}."""
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018-nuclei"
    return root


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def _pair(root: Path, stem: str, mask: np.ndarray, *, image: np.ndarray | None = None) -> None:
    if image is None:
        image = np.random.default_rng(len(stem)).integers(0, 255, mask.shape[:2]).astype(np.uint8)
    _write(root / "images" / f"{stem}.png", image)
    _write(root / "masks" / f"{stem}.png", mask)


def _square_mask(side: int = 32, *, fill: int = 255, fg: int = 10) -> np.ndarray:
    """A ``side`` x ``side`` mask with ``fg`` x ``fg`` foreground pixels of value ``fill``."""
    mask = np.zeros((side, side), np.uint8)
    mask[:fg, :fg] = fill
    return mask


def _codes(report: Report, severity: str) -> set[str]:
    return {f.code for f in report.findings if f.severity == severity}


def test_dsb2018_is_usable_with_its_notes(dsb2018: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = inspect_folder(dsb2018)
    assert report.ok and _codes(report, "error") == set()
    assert {"masks-0-255", "image-sizes", "alpha-dropped"} <= _codes(report, "info")
    assert report.counts == {"images": 59, "masks": 59, "pairs": 59}
    assert len(report.image_sizes) == 9 and sum(report.image_sizes.values()) == 59
    assert next(iter(report.image_sizes)) == "256x256" and list(report.image_sizes)[-1] == "1388x1040"
    sizes = next(f for f in report.findings if f.code == "image-sizes")
    assert sizes.message.startswith("9 sizes from 256x256 to 1388x1040")
    assert report.channels == {"RGBA": 59} and report.dtypes == {"uint8": 59}
    assert report.mask_values == {"0,255": 59}
    # PROVENANCE.txt: foreground averages 15.7% per image, from 0.26% to 59.2%
    stats = report.foreground["1"]
    assert round(stats["mean"], 3) == 0.157
    assert round(stats["min"], 4) == 0.0026 and round(stats["max"], 3) == 0.592
    assert report.empty_masks == [] and report.unreadable == []
    assert main([str(dsb2018)]) == 0
    out = capsys.readouterr().out
    assert "verdict:      usable" in out and "[masks-0-255]" in out
    # The plan: the median image (256 high, 320 wide) is larger than the 256 cap, so it is tiled.
    assert report.plan is not None and report.plan["patch_size"] == 256
    assert "plan:         patch 256x256 (planned)" in out
    assert report.splits["train"]["images"] == 47 and report.splits["val"]["images"] == 12
    assert report.splits["train"]["classes"] == report.splits["val"]["classes"] == [1]


def test_the_issue_case_48px_images_get_a_48px_patch_and_a_warning_when_forced_larger(tmp_path: Path) -> None:
    for stem in "abcdef":
        _pair(tmp_path, stem, _square_mask(48, fg=20))
    planned = inspect_folder(tmp_path)
    assert planned.plan is not None and planned.plan["patch_size"] == 48
    assert "images-smaller-than-patch" not in _codes(planned, "warning")
    forced = inspect_folder(tmp_path, patch_size=256)
    warning = next(f for f in forced.findings if f.code == "images-smaller-than-patch")
    assert "6 image(s) (48x48) are at most half the patch 256" in warning.message
    assert "near 48" in warning.fix


def test_score_distortions_are_warned(tmp_path: Path) -> None:
    # Two images with foreground, two without; split so that validation holds only empty masks.
    for stem in "ab":
        _pair(tmp_path / "train", stem, _square_mask())
    for stem in "cd":
        _pair(tmp_path / "val", stem, _square_mask(fg=0))
    report = inspect_folder(tmp_path / "train", val_root=tmp_path / "val")
    assert "val-without-foreground" in _codes(report, "warning")
    # Multi-class: class 2 only in training masks, class 3 only in validation masks.
    root = tmp_path / "multi"
    _pair(root / "train", "a", _square_mask(fill=1) + np.pad(_square_mask(4, fill=2, fg=4), (28, 0)))
    _pair(root / "val", "b", _square_mask(fill=1) + np.pad(_square_mask(4, fill=3, fg=4), (28, 0)))
    multi = inspect_folder(root / "train", val_root=root / "val", num_classes=4)
    messages = {f.code: f.message for f in multi.findings}
    assert "class(es) [2] appear in training masks only" in messages["class-train-only"]
    assert "class(es) [3] appear in validation masks only" in messages["class-val-only"]


def test_a_test_fraction_is_a_split_of_its_own(dsb2018: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = inspect_folder(dsb2018, test_fraction=0.2)
    images = {name: part["images"] for name, part in report.splits.items()}
    assert images == {"train": 35, "val": 12, "test": 12} and report.ok
    assert main([str(dsb2018), "--test-fraction", "0.2"]) == 0
    assert "  test:         12 images" in capsys.readouterr().out


def test_classes_in_the_test_split_only_or_missing_from_it_are_warned(tmp_path: Path) -> None:
    stems = list("abcdefgh")
    test = split_with_test(stems, val_fraction=0.25, test_fraction=0.25, seed=0).test
    for stem in stems:
        # Class 3 only in the test images, class 2 only outside them; class 1 everywhere.
        extra = 3 if stem in test else 2
        _pair(tmp_path, stem, _square_mask(fill=1) + np.pad(_square_mask(4, fill=extra, fg=4), (28, 0)))
    report = inspect_folder(tmp_path, num_classes=4, val_fraction=0.25, test_fraction=0.25)
    assert report.splits["test"]["classes"] == [1, 3]
    messages = {f.code: f.message for f in report.findings}
    assert "class(es) [3] appear in test masks only" in messages["class-test-only"]
    assert "class(es) [2] appear in no test mask" in messages["class-not-in-test"]
    plain = inspect_folder(tmp_path, num_classes=4, val_fraction=0.25)
    assert "test" not in plain.splits and "class-test-only" not in _codes(plain, "warning")


def test_too_few_images_for_a_test_split_is_the_error_training_raises(tmp_path: Path) -> None:
    for stem in "ab":
        _pair(tmp_path, stem, _square_mask())
    report = inspect_folder(tmp_path, test_fraction=0.3)
    finding = next(f for f in report.findings if f.code == "too-few-images")
    assert "2 image(s) are too few for a training, validation and test part" in finding.message
    with pytest.raises(DataProblem, match="too few for a training") as caught:
        folder_datasets(tmp_path, patch_size=8, test_fraction=0.3)
    assert caught.value.code == "too-few-images"


def test_json_output_is_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for stem in "ab":
        _pair(tmp_path, stem, _square_mask())
    assert main([str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["counts"]["pairs"] == 2
    assert data == json.loads(json.dumps(inspect_folder(tmp_path).to_dict()))


def test_foreground_imbalance_is_a_warning_with_the_loss_advice(tmp_path: Path) -> None:
    for stem in "abc":
        _pair(tmp_path, stem, _square_mask(fg=7))  # 49 of 1024 pixels
    _pair(tmp_path, "d", _square_mask(fg=0))  # empty
    _pair(tmp_path, "e", _square_mask(fg=0))
    report = inspect_folder(tmp_path)
    assert report.ok
    warning = next(f for f in report.findings if f.code == "foreground-imbalance")
    assert warning.severity == "warning"
    assert warning.message == "foreground is 2.9% of pixels"  # 3 * 49 / (5 * 1024) = 2.87%
    assert "dice or focal" in warning.fix
    assert report.foreground["1"]["pixels"] == pytest.approx(3 * 49 / (5 * 1024))
    assert report.foreground["1"]["mean"] == pytest.approx(3 * 49 / 1024 / 5)
    assert report.foreground["1"]["min"] == 0.0 and report.foreground["1"]["max"] == pytest.approx(49 / 1024)
    empty = next(f for f in report.findings if f.code == "empty-masks")
    assert empty.severity == "warning" and empty.message.startswith("2 of 5 masks are empty")


def test_balanced_foreground_gets_no_imbalance_warning(tmp_path: Path) -> None:
    for stem in "ab":
        _pair(tmp_path, stem, _square_mask(fg=16))  # 25%
    assert "foreground-imbalance" not in _codes(inspect_folder(tmp_path), "warning")


def test_multi_class_masks_report_per_class_and_suggest_num_classes(tmp_path: Path) -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[:10, :10], mask[10:, 10:11] = 1, 3  # 25% class 1, 2.5% class 3, class 2 absent
    for stem in "ab":
        _pair(tmp_path, stem, mask)
    report = inspect_folder(tmp_path)
    error = next(f for f in report.findings if f.code == "mask-classes")
    assert "num_classes=4" in error.fix and "--num-classes 4" in error.fix
    fixed = inspect_folder(tmp_path, num_classes=4)
    assert fixed.ok and set(fixed.foreground) == {"1", "2", "3"}
    assert fixed.foreground["1"]["pixels"] == pytest.approx(0.25)
    assert fixed.foreground["3"]["pixels"] == pytest.approx(0.025)
    imbalanced = [f.message for f in fixed.findings if f.code == "foreground-imbalance"]
    assert imbalanced == ["class 3 is 2.5% of pixels"]
    assert [f.message for f in fixed.findings if f.code == "class-absent"] == ["class 2 appears in no mask"]


def test_16_bit_and_unpaired_masks_are_reported(tmp_path: Path) -> None:
    image = np.full((32, 32), 4000, np.uint16)
    for stem in "ab":
        _pair(tmp_path, stem, _square_mask(fg=16), image=image)
    _write(tmp_path / "masks" / "stray.png", _square_mask())
    report = inspect_folder(tmp_path)
    assert report.ok
    assert report.value_ranges == {"uint16": [4000.0, 4000.0]}
    assert "16-bit" in _codes(report, "info") and "unpaired-mask" in _codes(report, "warning")
    assert report.unpaired_masks == [str(tmp_path / "masks" / "stray.png")]


def test_overlap_between_train_and_validation_folders_is_a_warning(tmp_path: Path) -> None:
    for part in ("train", "val"):
        _pair(tmp_path / part, "same", _square_mask(fg=16))
    report = inspect_folder(tmp_path / "train", val_root=tmp_path / "val")
    assert report.ok and "train-val-overlap" in _codes(report, "warning")
    assert report.counts == {
        "images": 1,
        "masks": 1,
        "pairs": 1,
        "val_images": 1,
        "val_masks": 1,
        "val_pairs": 1,
    }


def _missing(root: Path) -> None:
    pass


def _no_masks(root: Path) -> None:
    _write(root / "images" / "a.png", _square_mask())


def _no_images(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()


def _unpaired_image(root: Path) -> None:
    _pair(root, "a", _square_mask())
    _write(root / "images" / "b.png", _square_mask())


def _corrupt(root: Path) -> None:
    _pair(root, "a", _square_mask())
    _pair(root, "b", _square_mask())
    (root / "images" / "b.png").write_bytes(b"\x89PNG not really")


def _mismatch(root: Path) -> None:
    _pair(root, "a", _square_mask())
    _pair(root, "b", _square_mask(24), image=np.zeros((32, 32), np.uint8))


def _ambiguous(root: Path) -> None:
    _pair(root, "a", _square_mask())
    _pair(root, "b", _square_mask(fill=128))  # {0, 128}


def _single(root: Path) -> None:
    _pair(root, "a", _square_mask())


BROKEN: list[tuple[Callable[[Path], None], str]] = [
    (_missing, "missing-folder"),
    (_no_masks, "missing-subfolder"),
    (_no_images, "no-images"),
    (_unpaired_image, "unpaired-image"),
    (_corrupt, "unreadable"),
    (_mismatch, "size-mismatch"),
    (_ambiguous, "mask-values"),
    (_single, "too-few-images"),
]


@pytest.mark.parametrize(("build", "code"), BROKEN, ids=[case[1] for case in BROKEN])
def test_broken_folders_exit_2_with_the_finding_the_dataset_would_raise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], build: Callable[[Path], None], code: str
) -> None:
    root = tmp_path / "data"
    build(root)
    assert main([str(root)]) == 2
    out = capsys.readouterr().out
    assert "NOT usable" in out and f"ERROR   [{code}]" in out
    report = inspect_folder(root)
    assert not report.ok and code in _codes(report, "error")
    finding = next(f for f in report.findings if f.code == code)
    assert finding.fix and "\n" not in finding.message
    with pytest.raises(DataProblem) as caught:  # the dataset refuses the same folder, for the same reason
        folder_datasets(root, patch_size=8)
    assert caught.value.code == code


def test_bad_num_classes_is_an_error_finding(tmp_path: Path) -> None:
    for stem in "ab":
        _pair(tmp_path, stem, _square_mask())
    assert main([str(tmp_path), "--num-classes", "0"]) == 2


def test_mostly_foreground_masks_state_the_constant_dice_and_warn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 20: on masks that are ~80 % foreground, predicting foreground everywhere scores Dice ~0.89;
    the doctor states that floor and warns, so a search reaching it does not read as success."""
    for i, stem in enumerate("abcdefgh"):
        _pair(tmp_path, stem, _square_mask(fg=28 + i % 2))  # 784 or 841 of 1024 pixels
    report = inspect_folder(tmp_path, val_fraction=0.25)
    p = report.splits["val"]["foreground"]
    assert 0.76 < p < 0.83
    assert report.constant_dice == {"all_foreground": pytest.approx(2 * p / (1 + p)), "all_background": 0.0}
    warning = next(f for f in report.findings if f.code == "high-constant-dice")
    assert warning.severity == "warning"
    assert f"scores val Dice {2 * p / (1 + p):.3f}" in warning.message and "not 0" in warning.fix
    assert main([str(tmp_path), "--val-fraction", "0.25"]) == 0
    out = capsys.readouterr().out
    assert f"constant Dice: all foreground {2 * p / (1 + p):.3f}, all background 0.000" in out


def test_sparse_foreground_states_a_low_constant_dice_without_a_warning(dsb2018: Path) -> None:
    report = inspect_folder(dsb2018)
    p = report.splits["val"]["foreground"]
    assert report.constant_dice["all_foreground"] == pytest.approx(2 * p / (1 + p)) and p < 0.3
    assert "high-constant-dice" not in _codes(report, "warning")
