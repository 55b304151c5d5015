"""Reading image files: formats, bit depths, channel layouts and unreadable files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from unet.data.images import read_image, read_mask
from unet.data.problems import DataProblem
from unet.errors import DataError

RNG = np.random.default_rng(0)
GRAY8 = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
GRAY16 = RNG.integers(0, 65536, (6, 7), dtype=np.uint16)
RGB8 = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
RGBA8 = np.dstack([RGB8, np.full((6, 7), 200, np.uint8)])


def _opencv(path: Path, array: np.ndarray) -> None:
    """Write with OpenCV, which stores BGR(A): convert so the file holds ``array`` as RGB(A)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), array)


def _pil(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def _tiff(path: Path, array: np.ndarray) -> None:
    tifffile.imwrite(path, array)


def _planar_tiff(path: Path, array: np.ndarray) -> None:
    tifffile.imwrite(path, np.moveaxis(array, -1, 0), photometric="rgb", planarconfig="separate")


@pytest.mark.parametrize(
    ("name", "write", "stored", "expected"),
    [
        ("gray8.png", _opencv, GRAY8, GRAY8[:, :, None]),
        ("gray16.png", _opencv, GRAY16, GRAY16[:, :, None]),
        ("rgb8.png", _pil, RGB8, RGB8),
        ("rgb16.png", _opencv, RGB16, RGB16),
        ("rgba8.png", _pil, RGBA8, RGB8),
        ("rgba8-cv.png", _opencv, RGBA8, RGB8),
        ("gray-alpha.png", _pil, np.dstack([GRAY8, GRAY8 // 2]), GRAY8[:, :, None]),
        ("gray8.tif", _tiff, GRAY8, GRAY8[:, :, None]),
        ("gray16.tiff", _tiff, GRAY16, GRAY16[:, :, None]),
        ("rgb16.tif", _tiff, RGB16, RGB16),
        ("rgba8.tif", _tiff, RGBA8, RGB8),
        ("planar.tif", _planar_tiff, RGB16, RGB16),
        ("upper.PNG", _opencv, GRAY8, GRAY8[:, :, None]),
    ],
)
def test_read_image_keeps_depth_and_rgb_order(
    tmp_path: Path,
    name: str,
    write: Callable[[Path, np.ndarray], None],
    stored: np.ndarray,
    expected: np.ndarray,
) -> None:
    path = tmp_path / name
    write(path, stored)
    image = read_image(path)
    assert image.dtype == expected.dtype
    np.testing.assert_array_equal(image, expected)


def test_read_image_decodes_jpeg_close_to_the_original(tmp_path: Path) -> None:
    smooth = np.tile(np.linspace(40, 200, 16).astype(np.uint8), (16, 1))
    assert cv2.imwrite(str(tmp_path / "a.jpg"), smooth, [cv2.IMWRITE_JPEG_QUALITY, 100])
    image = read_image(tmp_path / "a.jpg")
    assert image.shape == (16, 16, 1) and image.dtype == np.uint8
    assert np.abs(image[:, :, 0].astype(int) - smooth).max() <= 2


def test_read_mask_reads_palette_png_as_indices(tmp_path: Path) -> None:
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)  # VOC-style colours
    image.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), indices)


def test_truncated_palette_mask_is_unreadable(tmp_path: Path) -> None:
    Image.fromarray(np.tile(np.arange(4, dtype=np.uint8), (40, 10)), mode="P").save(tmp_path / "full.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "full.png").read_bytes()[:60])
    with pytest.raises(DataProblem, match=r"cut\.png: cannot be decoded") as caught:
        read_mask(tmp_path / "cut.png")
    assert caught.value.code == "unreadable"


def test_read_mask_drops_alpha(tmp_path: Path) -> None:
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[1:3, 1:3, :3] = 255
    mask[:, :, 3] = 255
    _pil(tmp_path / "m.png", mask)
    assert read_mask(tmp_path / "m.png").shape == (4, 4, 3)


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(1).bytes(300))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated_png(path: Path) -> None:
    _, encoded = cv2.imencode(".png", RGB8)
    path.write_bytes(encoded.tobytes()[:60])


@pytest.mark.parametrize(
    ("name", "write", "code"),
    [
        ("noise.png", _random_bytes, "unreadable"),
        ("noise.jpg", _random_bytes, "unreadable"),
        ("noise.tif", _random_bytes, "unreadable"),
        ("empty.png", _empty, "unreadable"),
        ("cut.png", _truncated_png, "unreadable"),
        ("float.tif", lambda p: _tiff(p, GRAY8.astype(np.float32)), "image-dtype"),
        ("signed.tif", lambda p: _tiff(p, GRAY16.astype(np.int32)), "image-dtype"),
        ("stack.tif", lambda p: _tiff(p, np.zeros((5, 6, 7), np.uint8)), "image-shape"),
    ],
)
def test_unusable_image_files_raise_one_line_naming_the_file(
    tmp_path: Path, name: str, write: Callable[[Path], None], code: str
) -> None:
    path = tmp_path / name
    write(path)
    with pytest.raises(DataError) as caught:
        read_image(path)
    assert isinstance(caught.value, DataProblem) and caught.value.code == code
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
