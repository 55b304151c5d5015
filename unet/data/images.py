"""Reading image and mask files into numpy arrays, channels last, in RGB order.

PNG and JPEG are decoded with OpenCV (8- and 16-bit, gray, RGB and RGBA), TIFF with tifffile. Images keep
their stored bit depth (uint8 or uint16): scaling to floats happens in the transforms, after augmentation.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image

from unet.data.problems import DataProblem

# File suffixes read as images or masks (compared in lower case); other files in a folder are ignored.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_TIFF_SUFFIXES = (".tif", ".tiff")
# Bit depths an image may have; the dtype's maximum (255, 65535) is what "dtype" normalisation divides by.
IMAGE_DTYPES: tuple[type[np.generic], ...] = (np.uint8, np.uint16)
# PNG colour type (byte 25 of the file, in the IHDR chunk): 3 is a palette image, 4 gray + alpha.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PALETTE = 3
_PNG_GRAY_ALPHA = 4


def read_raw(path: Path, *, palette_indices: bool = False) -> np.ndarray:
    """The pixels of an image file as stored: ``(H, W)`` or ``(H, W, C)``, RGB(A) order, any dtype.

    Args:
        path: a PNG, JPEG or TIFF file.
        palette_indices: read palette PNGs as their palette indices (what a palette mask means)
            instead of the colours they show.

    Raises:
        DataProblem: ``unreadable`` when the file cannot be decoded, ``image-shape`` when it does not
            hold one 2-D image.
    """
    path = Path(path)
    color_type = _png_color_type(path)
    if path.suffix.lower() in _TIFF_SUFFIXES:
        array = _read_tiff(path)
    elif palette_indices and color_type == _PNG_PALETTE:
        array = _read_palette_indices(path)
    else:
        array = _read_with_opencv(path)
    if color_type == _PNG_GRAY_ALPHA and array.ndim == 3 and array.shape[2] == 4:
        array = np.ascontiguousarray(array[:, :, [0, 3]])  # OpenCV expands gray + alpha to RGBA
    if array.size == 0:
        raise _unreadable(path, "holds no pixels")
    return array


def read_image(path: Path) -> np.ndarray:
    """An image file as ``(H, W, C)`` uint8 or uint16 with C = 1 (gray) or 3 (RGB); alpha is dropped.

    Raises:
        DataProblem: the file is unreadable, not one 2-D image, or not 8- or 16-bit.
    """
    return as_image(read_raw(path), path)


def read_mask(path: Path) -> np.ndarray:
    """A mask file as stored, less any alpha channel: ``(H, W)`` or ``(H, W, C)``; palette PNGs as indices.

    The values are decoded into class indices by ``unet.data.masks.decode_mask``.
    """
    array = read_raw(path, palette_indices=True)
    if array.ndim == 3 and array.shape[2] in (2, 4):
        array = array[:, :, :-1]
    return array


def as_image(raw: np.ndarray, path: Path) -> np.ndarray:
    """Bring a stored image to ``(H, W, 1)`` or ``(H, W, 3)``: gray stays gray, alpha is dropped.

    Raises:
        DataProblem: ``image-dtype`` for anything but uint8/uint16, ``image-shape`` for other channel counts.
    """
    if raw.dtype.type not in IMAGE_DTYPES:
        raise DataProblem(
            "image-dtype",
            f"{path}: pixels are {raw.dtype}, not 8- or 16-bit unsigned",
            "convert the image to uint8 or uint16 (e.g. rescale float data to 0..65535)",
        )
    if raw.ndim == 2:
        return raw[:, :, None]
    channels = raw.shape[2]
    if channels in (1, 3):
        return raw
    if channels in (2, 4):  # gray + alpha, RGB + alpha: the alpha channel carries no signal
        return np.ascontiguousarray(raw[:, :, :-1])
    raise _bad_shape(path, raw.shape)


def _read_tiff(path: Path) -> np.ndarray:
    try:
        array = tifffile.imread(path)
    except Exception as error:  # tifffile raises many types for corrupt files; all mean "unreadable"
        raise _unreadable(path, f"cannot be read as TIFF ({_one_line(error)})") from error
    while array.ndim > 3 and array.shape[0] == 1:  # drop leading singleton page/series axes
        array = array[0]
    if array.ndim == 3 and array.shape[2] > 4 and array.shape[0] <= 4:  # planar (C, H, W) storage
        array = np.moveaxis(array, 0, -1)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] > 4):
        raise _bad_shape(path, array.shape)
    return np.ascontiguousarray(array)


def _read_palette_indices(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except (OSError, SyntaxError, ValueError) as error:  # what Pillow raises for broken files
        raise _unreadable(path, f"cannot be decoded ({_one_line(error)})") from error


def _read_with_opencv(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)  # imdecode, unlike imread, accepts any path encoding
    except OSError as error:
        raise _unreadable(path, f"cannot be opened ({error.strerror})") from error
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if array is None:
        raise _unreadable(path, "cannot be decoded (corrupt, truncated or not an image)")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2RGBA)
    if array.ndim not in (2, 3):
        raise _bad_shape(path, array.shape)
    return array


def _png_color_type(path: Path) -> int | None:
    """The PNG colour type from the file header, or None for other (or unreadable) files."""
    try:
        with open(path, "rb") as file:
            header = file.read(26)
    except OSError:
        return None  # the main reader reports the error
    return header[25] if header.startswith(_PNG_SIGNATURE) and len(header) == 26 else None


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _unreadable(path: Path, what: str) -> DataProblem:
    return DataProblem("unreadable", f"{path}: {what}", "re-export it as PNG or TIFF, or remove it")


def _bad_shape(path: Path, shape: tuple[int, ...]) -> DataProblem:
    return DataProblem(
        "image-shape",
        f"{path}: holds an array of shape {tuple(shape)}, not one 2-D gray, RGB or RGBA image",
        "store one 2-D image per file (split stacks and multi-page files)",
    )
