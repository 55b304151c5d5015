"""Mask decoding: every encoding rule of ``decode_mask`` as a table."""

from __future__ import annotations

import numpy as np
import pytest

from unet.data.masks import decode_mask
from unet.data.problems import DataProblem
from unet.errors import ConfigError, DataError


def _mask(values: list[list[int]], dtype: type = np.uint8) -> np.ndarray:
    return np.array(values, dtype=dtype)


@pytest.mark.parametrize(
    ("stored", "num_classes", "expected"),
    [
        (_mask([[0, 255], [255, 0]]), None, [[0, 1], [1, 0]]),
        (_mask([[0, 1], [1, 0]]), None, [[0, 1], [1, 0]]),
        (_mask([[0, 0], [0, 0]]), None, [[0, 0], [0, 0]]),
        (_mask([[255, 255], [255, 255]]), None, [[1, 1], [1, 1]]),
        (_mask([[1, 1], [1, 1]]), None, [[1, 1], [1, 1]]),
        (_mask([[0, 255], [0, 0]]), 2, [[0, 1], [0, 0]]),  # binary encodings win over num_classes
        (_mask([[0, 65535], [0, 0]], np.uint16), None, [[0, 1], [0, 0]]),  # 16-bit 0/max
        (_mask([[0, 255], [0, 0]], np.uint16), None, [[0, 1], [0, 0]]),  # 0/255 stored in 16 bits
        (np.array([[False, True], [True, True]]), None, [[0, 1], [1, 1]]),
        (_mask([[0, 1], [2, 3]]), 4, [[0, 1], [2, 3]]),
        (_mask([[0, 2], [2, 0]]), 3, [[0, 2], [2, 0]]),  # not every class in every mask
        (_mask([[0, 1], [2, 1]], np.uint16), 5, [[0, 1], [2, 1]]),
        (np.array([[0.0, 2.0], [1.0, 0.0]], dtype=np.float32), 3, [[0, 2], [1, 0]]),
        (np.dstack([_mask([[0, 255], [255, 0]])] * 3), None, [[0, 1], [1, 0]]),  # equal channels
        (_mask([[0, 255], [255, 0]])[:, :, None], None, [[0, 1], [1, 0]]),
    ],
)
def test_decode_mask_reads_each_encoding(stored: np.ndarray, num_classes: int | None, expected: list) -> None:
    decoded = decode_mask(stored, path="m.png", num_classes=num_classes)
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, np.array(expected))


@pytest.mark.parametrize(
    ("stored", "num_classes", "code", "quoted"),
    [
        (_mask([[0, 128], [255, 0]]), None, "mask-values", "[0, 128, 255]"),
        (_mask([[0, 38], [75, 0]]), None, "mask-values", "[0, 38, 75]"),
        (_mask([[0, 38], [75, 0]]), 3, "mask-values", "[0, 38, 75]"),
        (_mask([[0, 4095], [1000, 0]], np.uint16), None, "mask-values", "[0, 1000, 4095]"),
        (_mask([[0, 1], [2, 0]]), None, "mask-classes", "pass num_classes=3"),
        (_mask([[0, 1], [2, 0]]), 1, "mask-classes", "num_classes is 1"),
        (_mask([[0, 1], [4, 0]]), 3, "mask-classes", "pass num_classes=5"),
        (_mask([[0, -1], [1, 0]], np.int16), 3, "mask-values", "[-1, 0, 1]"),
        (np.array([[0.0, 0.5], [1.0, 0.0]]), 3, "mask-values", "[0, 0.5, 1]"),
        (
            np.dstack([_mask([[0, 255]]), _mask([[0, 0]]), _mask([[0, 0]])]),
            None,
            "mask-channels",
            "3 channels",
        ),
        (np.arange(20, dtype=np.uint8).reshape(4, 5), None, "mask-classes", "... (20 distinct)"),
    ],
)
def test_decode_mask_rejects_ambiguous_values(
    stored: np.ndarray, num_classes: int | None, code: str, quoted: str
) -> None:
    with pytest.raises(DataError) as caught:
        decode_mask(stored, path="/data/masks/a.png", num_classes=num_classes)
    message = str(caught.value)
    assert isinstance(caught.value, DataProblem) and caught.value.code == code
    assert quoted in message
    assert "/data/masks/a.png" in message
    assert "\n" not in message


def test_ambiguous_jpeg_mask_says_jpeg_is_lossy() -> None:
    with pytest.raises(DataError, match="JPEG is lossy"):
        decode_mask(_mask([[0, 3], [252, 255]]), path="a.jpg")


@pytest.mark.parametrize("num_classes", [0, -2, 1.5, "3"])
def test_decode_mask_rejects_bad_num_classes(num_classes: object) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        decode_mask(_mask([[0, 1]]), path="m.png", num_classes=num_classes)  # type: ignore[arg-type]
