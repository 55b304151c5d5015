"""The folder dataset: the real dsb2018 nuclei set end to end, and every bad input as a table."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from torch.utils.data import DataLoader

from unet.data import FolderDataset, folder_datasets, split_stems, split_with_test
from unet.data.problems import DataProblem
from unet.errors import ConfigError, DataError

DSB_COUNT = 59  # images in the shared dsb2018 subset (PROVENANCE.txt)


@pytest.fixture(scope="module")
def dsb2018() -> Path:
    """The shared real dataset: 59 RGBA microscopy PNGs of nine sizes, masks exactly {0, 255}."""
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018-nuclei"
    return root


@pytest.fixture(scope="module")
def dsb_sets(dsb2018: Path) -> tuple[FolderDataset, FolderDataset]:
    return folder_datasets(dsb2018, patch_size=96, seed=0)


def _write(path: Path, array: np.ndarray) -> Path:
    """Write a PNG/JPEG (OpenCV; RGB arrays stored as such) or TIFF (tifffile) file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
    else:
        if array.ndim == 3:
            array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
        assert cv2.imwrite(str(path), array)
    return path


def _pair(root: Path, stem: str, image: np.ndarray, mask: np.ndarray, *, ext: str = ".png") -> None:
    _write(root / "images" / f"{stem}{ext}", image)
    _write(root / "masks" / f"{stem}.png", mask)


def _disc_mask(size: tuple[int, int] = (16, 20)) -> np.ndarray:
    mask = np.zeros(size, np.uint8)
    cv2.circle(mask, (size[1] // 2, size[0] // 2), 4, 255, -1)
    return mask


def _gray(size: tuple[int, int] = (16, 20), dtype: type = np.uint8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, np.iinfo(dtype).max, size).astype(dtype)


# -- the real dataset --------------------------------------------------------------------------------


def test_dsb2018_batches_through_a_dataloader(dsb_sets: tuple[FolderDataset, FolderDataset]) -> None:
    train, val = dsb_sets
    assert (len(train), len(val)) == (DSB_COUNT - 12, 12)  # round(59 * 0.2) = 12
    assert (train.in_channels, train.num_classes, val.in_channels) == (3, 1, 3)  # RGBA -> RGB
    torch.manual_seed(0)
    images, masks = next(iter(DataLoader(train, batch_size=6, shuffle=True)))
    assert images.shape == (6, 3, 96, 96) and images.dtype == torch.float32
    assert masks.shape == (6, 96, 96) and masks.dtype == torch.int64
    assert set(masks.unique().tolist()) <= {0, 1} and masks.sum() > 0
    # zscore: every image and channel has zero mean and unit standard deviation
    torch.testing.assert_close(images.mean(dim=(2, 3)), torch.zeros(6, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(images.std(dim=(2, 3), correction=0), torch.ones(6, 3), atol=1e-3, rtol=0)
    # Validation yields whole images at their own size (unet.validation tiles the larger ones).
    for sample, (val_image, val_mask) in zip(val.samples, (val[i] for i in range(len(val))), strict=True):
        height, width = sample.mask.shape
        assert val_image.shape == (3, height, width) and val_mask.shape == (height, width)
        torch.testing.assert_close(val_image.mean(dim=(1, 2)), torch.zeros(3), atol=1e-4, rtol=0)
    assert val.patch_size == train.patch_size == 96


def test_dsb2018_split_follows_the_seed(dsb2018: Path, dsb_sets: tuple[FolderDataset, FolderDataset]) -> None:
    train, val = dsb_sets
    stems = sorted(p.stem for p in (dsb2018 / "images").iterdir())
    assert sorted(train.stems + val.stems) == stems and not set(train.stems) & set(val.stems)
    assert (train.stems, val.stems) == split_stems(stems, val_fraction=0.2, seed=0)
    assert split_stems(stems, val_fraction=0.2, seed=1)[1] != val.stems


def test_validation_items_are_deterministic_and_training_follows_torch_seed(
    dsb_sets: tuple[FolderDataset, FolderDataset],
) -> None:
    train, val = dsb_sets
    assert torch.equal(val[0][0], val[0][0]) and torch.equal(val[3][1], val[3][1])
    torch.manual_seed(7)
    first = train[0][0]
    torch.manual_seed(7)
    assert torch.equal(train[0][0], first)
    assert not torch.equal(train[0][0], first)  # the generator moved on: a new random patch


def test_explicit_validation_folder(dsb2018: Path, tmp_path: Path) -> None:
    stems = sorted(p.stem for p in (dsb2018 / "images").iterdir())[:5]
    for part, chosen in (("train", stems[:3]), ("val", stems[3:])):
        for sub in ("images", "masks"):
            (tmp_path / part / sub).mkdir(parents=True)
            for stem in chosen:
                shutil.copy(dsb2018 / sub / f"{stem}.png", tmp_path / part / sub)
    train, val = folder_datasets(tmp_path / "train", val_root=tmp_path / "val", patch_size=64)
    assert (train.stems, val.stems) == (stems[:3], stems[3:])
    height, width = val.samples[1].mask.shape
    assert val[1][0].shape == (3, height, width)  # the whole image, not a patch


def test_test_fraction_keeps_a_seeded_share_out_of_training_and_validation(dsb2018: Path) -> None:
    stems = sorted(p.stem for p in (dsb2018 / "images").iterdir())
    train, val = folder_datasets(dsb2018, patch_size=96, val_fraction=0.2, test_fraction=0.2, seed=0)
    split = split_with_test(stems, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert (train.stems, val.stems) == (split.train, split.val)
    assert len(split.test) == 12 and not set(split.test) & set(train.stems + val.stems)
    assert sorted(train.stems + val.stems + split.test) == stems


def test_test_fraction_beside_a_validation_folder_splits_the_training_folder_only(
    dsb2018: Path, tmp_path: Path
) -> None:
    stems = sorted(p.stem for p in (dsb2018 / "images").iterdir())[:6]
    for part, chosen in (("train", stems[:4]), ("val", stems[4:])):
        for sub in ("images", "masks"):
            (tmp_path / part / sub).mkdir(parents=True)
            for stem in chosen:
                shutil.copy(dsb2018 / sub / f"{stem}.png", tmp_path / part / sub)
    train, val = folder_datasets(
        tmp_path / "train", val_root=tmp_path / "val", test_fraction=0.25, patch_size=64
    )
    held_out = split_with_test(stems[:4], val_fraction=None, test_fraction=0.25, seed=0).test
    assert val.stems == stems[4:] and len(held_out) == 1
    assert sorted(train.stems + held_out) == stems[:4]


# -- formats, depths and channels -----------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_images_keep_their_depth(tmp_path: Path, ext: str) -> None:
    image = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    _pair(tmp_path / "train", "a", image, _disc_mask((16, 16)), ext=ext)
    _pair(tmp_path / "val", "b", image, _disc_mask((16, 16)), ext=ext)
    _, val = folder_datasets(
        tmp_path / "train", val_root=tmp_path / "val", patch_size=16, normalization="dtype"
    )
    np.testing.assert_allclose(val[0][0][0].numpy(), image / 65535, atol=1e-6)


@pytest.mark.parametrize(
    ("images", "channels"),
    [
        ({"a": _gray(), "b": _gray(dtype=np.uint16)}, 1),
        ({"a": _gray(), "b": np.dstack([_gray()] * 3)}, 3),
        ({"a": _gray(), "b": np.dstack([_gray()] * 4)}, 3),
        ({"a": np.dstack([_gray()] * 4), "b": np.dstack([_gray()] * 3)}, 3),
    ],
)
def test_mixed_channels_are_brought_to_one_count(
    tmp_path: Path, images: dict[str, np.ndarray], channels: int
) -> None:
    for stem, image in images.items():
        _pair(tmp_path, stem, image, _disc_mask())
    train, val = folder_datasets(tmp_path, patch_size=8, val_fraction=0.5)
    assert train.in_channels == val.in_channels == channels
    assert train[0][0].shape == (channels, 8, 8)
    assert val[0][0].shape == (channels, *val.samples[0].mask.shape)


def test_masks_may_have_another_extension_and_unpaired_masks_are_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _pair(tmp_path, "a", _gray(), _disc_mask(), ext=".tif")
    _pair(tmp_path, "b", _gray(), _disc_mask(), ext=".jpg")
    _write(tmp_path / "masks" / "orphan.png", _disc_mask())
    with caplog.at_level(logging.WARNING):
        train, val = folder_datasets(tmp_path, patch_size=8)
    assert sorted(train.stems + val.stems) == ["a", "b"]
    assert "orphan" in caplog.text


def test_multi_class_masks_need_num_classes(tmp_path: Path) -> None:
    mask = np.zeros((16, 20), np.uint8)
    mask[2:6, 2:6], mask[8:12, 8:12] = 1, 2
    for stem in "ab":
        _pair(tmp_path, stem, _gray(), mask)
    with pytest.raises(DataError, match="num_classes=3"):
        folder_datasets(tmp_path, patch_size=16)
    train, _ = folder_datasets(tmp_path, patch_size=16, num_classes=3, augment=False)
    assert train.num_classes == 3 and set(train[0][1].unique().tolist()) <= {0, 1, 2}


@pytest.mark.parametrize(
    ("kwargs", "error", "quoted"),
    [
        ({"normalization": "z-score"}, ConfigError, "Did you mean 'zscore'"),
        ({"patch_size": 0}, ConfigError, "patch_size"),
        ({"num_classes": 0}, ConfigError, "num_classes"),
        ({"val_fraction": 1.0}, ConfigError, "val_fraction"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path: Path, kwargs: dict, error: type, quoted: str) -> None:
    for stem in "ab":
        _pair(tmp_path, stem, _gray(), _disc_mask())
    with pytest.raises(error, match=quoted):
        folder_datasets(tmp_path, **kwargs)


# -- bad inputs ----------------------------------------------------------------------------------------


def _missing_folder(root: Path) -> None:
    pass


def _no_masks_folder(root: Path) -> None:
    _write(root / "images" / "a.png", _gray())


def _no_images(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "images" / "notes.txt").write_text("not an image")


def _image_without_mask(root: Path) -> None:
    for stem in ("a", "b", "c"):
        _write(root / "images" / f"{stem}.png", _gray())
    _write(root / "masks" / "a.png", _disc_mask())


def _corrupt_image(root: Path) -> None:
    _pair(root, "a", _gray(), _disc_mask())
    (root / "images" / "b.png").write_bytes(np.random.default_rng(0).bytes(256))
    _write(root / "masks" / "b.png", _disc_mask())


def _size_mismatch(root: Path) -> None:
    _pair(root, "a", _gray(), _disc_mask())
    _pair(root, "b", _gray((16, 20)), _disc_mask((16, 16)))


def _ambiguous_mask(root: Path) -> None:
    _pair(root, "a", _gray(), _disc_mask())
    mask = _disc_mask()
    mask[0, :4] = 128
    _pair(root, "b", _gray(), mask)


def _duplicate_stem(root: Path) -> None:
    _pair(root, "a", _gray(), _disc_mask())
    _pair(root, "b", _gray(), _disc_mask())
    _write(root / "images" / "a.tif", _gray())


def _single_image(root: Path) -> None:
    _pair(root, "a", _gray(), _disc_mask())


def _float_tiff(root: Path) -> None:
    _pair(root, "a", _gray(), _disc_mask())
    _pair(root, "b", _gray().astype(np.float32), _disc_mask(), ext=".tif")


def _colour_mask(root: Path) -> None:
    _pair(root, "a", _gray(), _disc_mask())
    _pair(root, "b", _gray(), np.dstack([_disc_mask(), np.zeros((16, 20), np.uint8), _disc_mask()]))


BAD_FOLDERS: list[tuple[Callable[[Path], None], str, list[str]]] = [
    (_missing_folder, "missing-folder", ["folder not found"]),
    (_no_masks_folder, "missing-subfolder", ["no masks/ subfolder"]),
    (_no_images, "no-images", ["images: no image files", "ignored 1 other file"]),
    (_image_without_mask, "unpaired-image", ["2 of 3 images have no mask", "(b, c)"]),
    (_corrupt_image, "unreadable", ["b.png: cannot be decoded"]),
    (_size_mismatch, "size-mismatch", ["b.png: mask is 16x16 but image", "is 20x16"]),
    (_ambiguous_mask, "mask-values", ["b.png: mask values [0, 128, 255]"]),
    (_duplicate_stem, "duplicate-stem", ["images/a.png, images/a.tif"]),
    (_single_image, "too-few-images", ["1 image(s), too few to split", "val_root"]),
    (_float_tiff, "image-dtype", ["b.tif: pixels are float32"]),
    (_colour_mask, "mask-channels", ["b.png: mask has 3 channels that differ"]),
]


@pytest.mark.parametrize(("build", "code", "quoted"), BAD_FOLDERS, ids=[case[1] for case in BAD_FOLDERS])
def test_bad_folders_raise_one_line_naming_the_problem(
    tmp_path: Path, build: Callable[[Path], None], code: str, quoted: list[str]
) -> None:
    root = tmp_path / "data"
    build(root)
    with pytest.raises(DataError) as caught:
        folder_datasets(root, patch_size=8)
    message = str(caught.value)
    assert isinstance(caught.value, DataProblem) and caught.value.code == code
    assert "\n" not in message
    assert str(root) in message
    for part in quoted:
        assert part in message
