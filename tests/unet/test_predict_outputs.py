"""python -m unet.predict never writes over an input, checks everything before writing, writes --out whole.

Issue 22: ``--out`` equal to ``--masks`` overwrote the true masks and printed Dice 1.0 (case 1); a mask of
the wrong size failed only after the earlier masks were written (case 11); ``--out`` a file, under a file,
read-only or on a full disk, and ``--device foo``, gave tracebacks (case 9); a full disk part way through
left a mix of two runs' files (case 8). Read-only and full disks are simulated at the ``os`` level
(``fail_writes_under`` in tests/conftest.py).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from output_cases import BAD_DESTINATIONS, bad_destination, snapshot

from unet.checkpoint import save_checkpoint
from unet.config import ModelConfig, TrainConfig
from unet.model import build_model
from unet.predict import cli
from unet.predict import main as predict_main

DSB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018-nuclei"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Three dsb2018 images of 256x256 with their masks, and an untrained 3-channel model beside them."""
    stems = [p.stem for p in sorted((DSB / "images").iterdir()) if cv2.imread(str(p)).shape[:2] == (256, 256)]
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        for stem in stems[:3]:
            shutil.copy(DSB / sub / f"{stem}.png", tmp_path / sub)
    config = TrainConfig(model=ModelConfig(in_channels=3, num_classes=1, depth=2, base_filters=4))
    model = build_model(config.model)
    save_checkpoint(
        tmp_path / "model.pt",
        state_dict=model.state_dict(),
        config=config,
        epoch=1,
        metrics={},
        plan=None,
        normalization=None,
    )
    return tmp_path


def _predict(data: Path, out: Path, *extra: str, images: Path | None = None, masks: bool = True) -> int:
    argv = ["--model", str(data / "model.pt"), "--images", str(images or data / "images"), "--quiet"]
    if masks:
        argv += ["--masks", str(data / "masks")]
    return predict_main([*argv, "--out", str(out), *extra])


def _one_line_error(capsys: pytest.CaptureFixture[str], *parts: str) -> None:
    captured = capsys.readouterr()
    err = captured.err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err, err
    assert "Traceback" not in err and captured.out == ""


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("masks", "is inside --masks"),
        ("images", "is inside --images"),
        ("images/pred", "is inside --images"),
        (".", "is inside --out"),  # the data folder holds the images and masks
    ],
)
def test_out_is_never_an_input_nor_holds_one(
    data: Path, capsys: pytest.CaptureFixture[str], out: str, message: str
) -> None:
    # Case 1: --out M wrote the predictions over the true masks, then scored them: Dice 1.0000, exit 0.
    before = snapshot(data)
    assert _predict(data, data / out) == 2
    _one_line_error(capsys, message)
    assert snapshot(data) == before


def test_a_mask_of_the_wrong_size_is_found_before_any_mask_is_written(
    data: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # Case 11: the first images' masks were written, then the wrong-size one failed with exit 2.
    last = sorted((data / "masks").iterdir())[-1]
    cv2.imwrite(str(last), np.zeros((100, 120), np.uint8))
    out = tmp_path_factory.mktemp("pred") / "out"
    assert _predict(data, out) == 2
    _one_line_error(capsys, f"{last}: mask is 120x100 but its image is 256x256")
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_an_unreadable_image_is_found_before_any_mask_is_written(
    data: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    last = sorted((data / "images").iterdir())[-1]
    last.write_bytes(b"not a png")
    out = tmp_path_factory.mktemp("pred") / "out"
    assert _predict(data, out, masks=False) == 2
    _one_line_error(capsys, str(last))
    assert not out.exists() and list(out.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        *BAD_DESTINATIONS,
        ("bad-device", "device 'foo' is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ],
)
def test_a_bad_destination_or_device_is_one_line_exit_2_and_nothing_written(
    data: Path,
    tmp_path_factory: pytest.TempPathFactory,
    fail_writes_under: Callable[[Path, int], None],
    capsys: pytest.CaptureFixture[str],
    case: str,
    message: str,
) -> None:
    # Case 9: each of these was a traceback.
    place = tmp_path_factory.mktemp("dest")
    if case == "bad-device":
        out, extra = place / "out", ["--device", "foo"]
    else:
        out, extra = bad_destination(place, case, fail_writes_under), []
    before = snapshot(place)
    assert _predict(data, out, *extra) == 2
    _one_line_error(capsys, message)
    assert snapshot(place) == before and {p.name for p in place.iterdir()} <= {"out", "file"}


def _disk_fills_after(monkeypatch: pytest.MonkeyPatch, writes: int) -> None:
    """Let ``writes`` masks be written, then fail every write with ENOSPC (a disk filling up)."""
    real: Callable[..., None] = cli.write_atomic
    count = {"n": 0}

    def write(path: Path, *args: object, **kwargs: object) -> None:
        count["n"] += 1
        if count["n"] > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, *args, **kwargs)

    monkeypatch.setattr(cli, "write_atomic", write)


def test_a_disk_filling_up_leaves_the_earlier_output_as_it_was(
    data: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Case 8: a failed second run into the folder of a first left some of each run's files.
    out = tmp_path_factory.mktemp("pred") / "out"
    assert _predict(data, out) == 0
    before = snapshot(out.parent)
    masks = [f"out/{p.name}" for p in (data / "images").iterdir()]
    assert sorted(before) == sorted([*masks, "out/scores.csv"])
    _disk_fills_after(monkeypatch, writes=2)
    capsys.readouterr()
    assert _predict(data, out, "--tta") == 2
    _one_line_error(capsys, f"--out {out} was not written (No space left on device; it is left as it was)")
    assert snapshot(out.parent) == before


def test_a_second_run_replaces_the_folder_whole(
    data: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path_factory.mktemp("pred") / "out"
    assert _predict(data, out) == 0
    first = sorted((data / "images").iterdir())[0]
    fewer = data / "fewer"
    fewer.mkdir()
    shutil.copy(first, fewer)
    assert _predict(data, out, images=fewer, masks=False) == 0
    # No scores.csv and no masks of the first run's other images: nothing of two runs side by side.
    assert [p.name for p in out.parent.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == [first.name]
    assert out.stat().st_mode & 0o777 == 0o777 & ~_umask()
    # A folder holding files predict does not write is refused rather than removed.
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert _predict(data, out) == 2
    _one_line_error(capsys, "holds 1 file(s) this command does not write (notes.txt)")
    assert (out / "notes.txt").read_text() == "mine"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _Planted:
    """A pickle that would create ``marker`` when unpickled by ``pickle.load``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (self.marker,))


def test_held_a_crafted_pickle_never_executes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Held in issue 22: checkpoints are read with torch.load(weights_only=True).
    marker = tmp_path / "executed"
    crafted = tmp_path / "model.pt"
    torch.save({"format": "unet-search checkpoint", "version": 1, "payload": _Planted(marker)}, crafted)
    out = tmp_path / "out"
    assert predict_main(["--model", str(crafted), "--images", str(DSB / "images"), "--out", str(out)]) == 2
    _one_line_error(capsys, f"{crafted}: cannot be read as a checkpoint")
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("size", [(1, 1), (3, 2000), (2000, 5)])
def test_held_tiny_and_huge_images_predict_at_their_size(
    data: Path, tmp_path_factory: pytest.TempPathFactory, size: tuple[int, int]
) -> None:
    # Held in issue 22 (found with 1 px and 4000 px images); one long side keeps the test fast.
    images = tmp_path_factory.mktemp("odd") / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / "odd.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    out = images.parent / "out"
    assert _predict(data, out, images=images, masks=False) == 0
    assert cv2.imread(str(out / "odd.png"), cv2.IMREAD_UNCHANGED).shape == size
