"""Transforms and normalisation: patch shapes, masks kept as class indices, hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from unet.data import NORMALIZATIONS, train_transforms
from unet.data.normalization import get_normalization
from unet.errors import ConfigError

CHECKER = np.array([[[0.0], [255.0]], [[255.0], [0.0]]], dtype=np.float32)  # (2, 2, 1)


@pytest.mark.parametrize(
    ("name", "image", "max_value", "expected"),
    [
        ("zscore", CHECKER, 255.0, [[-1.0, 1.0], [1.0, -1.0]]),  # mean 127.5, std 127.5
        ("minmax", CHECKER, 255.0, [[0.0, 1.0], [1.0, 0.0]]),
        ("dtype", CHECKER, 255.0, [[0.0, 1.0], [1.0, 0.0]]),
        ("dtype", CHECKER, 65535.0, [[0.0, 255 / 65535], [255 / 65535, 0.0]]),
        ("none", CHECKER, 255.0, [[0.0, 255.0], [255.0, 0.0]]),
        ("minmax", np.full((2, 2, 1), 7.0, np.float32), 255.0, [[0.0, 0.0], [0.0, 0.0]]),
        ("zscore", np.full((2, 2, 1), 7.0, np.float32), 255.0, [[0.0, 0.0], [0.0, 0.0]]),
    ],
)
def test_normalizations_match_hand_computed_values(
    name: str, image: np.ndarray, max_value: float, expected: list
) -> None:
    out = NORMALIZATIONS[name](image, max_value=max_value)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 0], expected, rtol=1e-5, atol=1e-6)


def test_zscore_is_per_channel_and_minmax_per_image() -> None:
    image = np.stack([np.array([[0.0, 2.0]]), np.array([[10.0, 30.0]])], axis=-1).astype(np.float32)
    np.testing.assert_allclose(
        NORMALIZATIONS["zscore"](image, max_value=255.0), [[[-1, -1], [1, 1]]], atol=1e-5
    )
    np.testing.assert_allclose(
        NORMALIZATIONS["minmax"](image, max_value=255.0), [[[0, 1 / 3], [2 / 30, 1]]], rtol=1e-6
    )


def test_unknown_normalization_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'zscore'"):
        get_normalization("z-score")


@pytest.mark.parametrize("augment", [True, False])
@pytest.mark.parametrize(
    ("height", "width", "dtype"), [(37, 50, np.uint8), (20, 9, np.uint16), (32, 32, np.uint8)]
)
def test_train_transforms_give_patches_with_class_indices_kept(
    augment: bool, height: int, width: int, dtype: type
) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, np.iinfo(dtype).max, (height, width, 3)).astype(dtype)
    mask = np.zeros((height, width), np.uint8)
    mask[: height // 2, : width // 2] = 1
    mask[height // 2 :, width // 2 :] = 2
    transform = train_transforms(24, augment=augment)
    for seed in range(12):
        transform.set_random_seed(seed)
        out = transform(image=image, mask=mask)
        assert out["image"].shape == (24, 24, 3) and out["image"].dtype == np.float32
        assert out["image"].min() >= 0.0 and out["image"].max() <= 1.0
        assert out["mask"].shape == (24, 24) and out["mask"].dtype == np.uint8
        assert set(np.unique(out["mask"]).tolist()) <= {0, 1, 2}  # nearest: no blended labels


def test_train_transforms_follow_their_seed() -> None:
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 1)).astype(np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    first, second = train_transforms(16), train_transforms(16)
    first.set_random_seed(3)
    second.set_random_seed(3)
    a, b = first(image=image, mask=mask)["image"], second(image=image, mask=mask)["image"]
    np.testing.assert_array_equal(a, b)
    second.set_random_seed(4)
    assert not np.array_equal(a, second(image=image, mask=mask)["image"])


@pytest.mark.parametrize("patch_size", [0, -8, 2.5, None])
def test_bad_patch_size_is_a_config_error(patch_size: object) -> None:
    with pytest.raises(ConfigError, match="patch_size"):
        train_transforms(patch_size)  # type: ignore[arg-type]
