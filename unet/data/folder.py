"""The folder dataset: image/mask pairs from ``DIR/images`` and ``DIR/masks``, decoded once, held in memory.

Decoding every file when the dataset is built costs about a second for a few hundred small images, makes
every epoch fast (no PNG decoding per step) and surfaces every unreadable file or bad mask before
training starts. It suits datasets that fit in memory as uint8/uint16 arrays; larger ones would need a
lazy reader.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from unet.config import VAL_FRACTION
from unet.data.checks import check_float, check_int, check_num_classes
from unet.data.device_geometry import DeviceGeometry
from unet.data.files import Pair, paired_files
from unet.data.images import read_image, read_mask
from unet.data.masks import decode_mask
from unet.data.normalization import get_normalization, normalize_image
from unet.data.problems import DataProblem
from unet.data.split import split_with_test
from unet.data.transforms import seed_transforms, train_transforms

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One decoded image/mask pair."""

    stem: str  # the shared file stem
    image: np.ndarray  # (H, W, C) uint8 or uint16 as stored; C is 1 (gray) or 3 (RGB), alpha dropped
    mask: np.ndarray  # (H, W) class indices, uint8 (uint16 above 256 classes) so OpenCV can warp them


def load_pair(pair: Pair, *, num_classes: int | None = None) -> Sample:
    """Read and check one image and its mask.

    Raises:
        DataProblem: unreadable files, ``size-mismatch`` or mask values with no single reading.
    """
    image = read_image(pair.image)
    raw_mask = read_mask(pair.mask)
    check_same_size(image.shape, raw_mask.shape, pair)
    mask = decode_mask(raw_mask, path=pair.mask, num_classes=num_classes)
    small = (num_classes or 1) <= 256
    return Sample(pair.stem, image, mask.astype(np.uint8 if small else np.uint16))


def check_same_size(image_shape: Sequence[int], mask_shape: Sequence[int], pair: Pair) -> None:
    """Raise ``size-mismatch`` unless the image and mask have the same height and width."""
    if tuple(image_shape[:2]) != tuple(mask_shape[:2]):
        raise DataProblem(
            "size-mismatch",
            f"{pair.mask}: mask is {_size(mask_shape)} but image {pair.image} is {_size(image_shape)}",
            "save each mask at its image's size (width x height)",
        )


def common_channels(samples: Sequence[Sample]) -> int:
    """The channel count all images are brought to: 1 if every image is stored gray, else 3.

    Decided from how files are stored, not their content: an RGB file whose channels happen to be
    equal stays RGB, so adding one colour image never changes how the others read.
    """
    return 1 if all(sample.image.shape[2] == 1 for sample in samples) else 3


class FolderDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Decoded image/mask pairs, cut into patches (or whole, for validation) and normalised on access.

    Items are ``(image, mask)``: image float32 ``(C, P, P)``, mask int64 ``(P, P)`` class indices, with
    ``P`` the transforms' patch size; without a transform, the whole image ``(C, H, W)`` and its mask
    ``(H, W)`` at their own size (``unet.validation`` tiles the ones larger than ``patch_size``).

    Randomness: with ``augmenting`` set, each item reseeds the albumentations pipeline from torch's
    global generator, so ``torch.manual_seed`` makes augmentation reproducible and each DataLoader
    worker (seeded differently by torch) draws its own augmentations.

    Attributes:
        in_channels: image channels (1 or 3).
        num_classes: 1 for binary masks, K >= 2 for class indices 0..K-1.
        stems: the samples' file stems, in item order.
        normalization: name of the normalisation applied last.
        device_geometry: the augmentation steps left for ``fit`` to apply on the device (or None).
        patch_size: side of the training patches; validation and prediction tile larger images with it.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        transform: A.Compose | None,
        patch_size: int | None = None,
        normalization: str = "zscore",
        num_classes: int = 1,
        augmenting: bool = False,
        device_geometry: DeviceGeometry | None = None,
    ) -> None:
        channels = {sample.image.shape[2] for sample in samples}
        if len(channels) > 1:
            raise ValueError(f"samples mix {sorted(channels)} channels: convert them first (common_channels)")
        self.samples = list(samples)
        self.in_channels = channels.pop() if channels else 1
        self.num_classes = num_classes
        self.stems = [sample.stem for sample in self.samples]
        self.normalization = normalization
        self.patch_size = patch_size
        self._normalize = get_normalization(normalization)
        self._transform = transform
        self._augmenting = augmenting
        # The part of the augmentation fit() applies to whole batches on the device, if any.
        self.device_geometry = device_geometry

    def with_samples(self, samples: Sequence[Sample]) -> FolderDataset:
        """This dataset's settings (transform, patch, normalisation) over other samples, e.g. a fold's."""
        other = copy.copy(self)
        other.samples = list(samples)
        other.stems = [sample.stem for sample in other.samples]
        return other

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.samples[index]
        if self._transform is None:
            image = normalize_image(sample.image, self.normalization)
            whole = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
            return whole, torch.from_numpy(sample.mask.astype(np.int64))
        if self._augmenting:
            seed_transforms(self._transform, int(torch.randint(0, 2**31 - 1, ()).item()))
        out = self._transform(image=sample.image, mask=sample.mask)
        max_value = float(np.iinfo(sample.image.dtype).max)
        # The pipeline ends in [0, 1] (ToFloat); normalisations are defined on file units.
        image = self._normalize(out["image"] * np.float32(max_value), max_value=max_value)
        image_tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return image_tensor, torch.from_numpy(out["mask"].astype(np.int64))


def folder_datasets(
    root: Path | str,
    *,
    val_root: Path | str | None = None,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = 0.0,
    seed: int = 0,
    patch_size: int = 256,
    normalization: str = "zscore",
    num_classes: int | None = None,
    augment: bool = True,
    geometry_on: str = "cpu",
) -> tuple[FolderDataset, FolderDataset]:
    """Training and validation datasets from ``root/images`` and ``root/masks``.

    Args:
        root: the dataset folder.
        val_root: a validation folder of the same layout; without it ``val_fraction`` of ``root`` is
            split off (``unet.data.split.split_with_test``: sorted stems, permutation seeded by ``seed``).
        val_fraction: share of ``root`` used for validation when there is no ``val_root``.
        test_fraction: share of ``root`` held out for testing (0: none): those images are in neither
            returned set (``search.execution.testset`` scores on them after a search).
        seed: seed of the split. Augmentation follows torch's global seed (see ``FolderDataset``).
        patch_size: side of the square training patches (random crops, ``unet.data.transforms``); the
            validation set yields whole images, tiled with this side where they are larger
            (``unet.data.plan`` chooses it from the data).
        normalization: a name from ``unet.data.normalization.NORMALIZATIONS``.
        num_classes: None or 1 for binary masks; K >= 2 for masks of class indices 0..K-1
            (see ``unet.data.masks.decode_mask``).
        augment: False keeps only the random crop for training.
        geometry_on: ``cpu`` (albumentations does everything) or ``device`` (the flips and 90° rotations
            run on whole batches on the training device; ``unet.data.device_geometry``).

    Returns:
        ``(train, val)``. Both have the same ``in_channels``: 1 when every image of both folders is
        stored gray, else 3 (gray images repeated, alpha dropped).

    Raises:
        DataError: a missing folder or subfolder, no images, images without masks, an unreadable
            image, a mask of another size than its image, or mask values with no single reading.
        ConfigError: an unknown normalisation or an out-of-range number.
    """
    get_normalization(normalization)  # an unknown name fails before any file is read
    check_int(patch_size, "patch_size", low=1)
    num_classes = check_num_classes(num_classes)
    check_float(val_fraction, "val_fraction", low=0.0, high=1.0, open_low=True, open_high=True)
    check_float(test_fraction, "test_fraction", low=0.0, high=1.0, open_high=True)
    check_int(seed, "seed", low=0)
    pairs = paired_files(root)
    val_pairs = [] if val_root is None else paired_files(val_root)
    start = time.perf_counter()
    # Every file is decoded and checked before the split, so content errors come first (as in the doctor).
    train = [load_pair(pair, num_classes=num_classes) for pair in pairs]
    val = [load_pair(pair, num_classes=num_classes) for pair in val_pairs]
    if val_root is None or test_fraction > 0:
        by_stem = {sample.stem: sample for sample in train}
        split = split_with_test(
            list(by_stem),
            val_fraction=val_fraction if val_root is None else None,
            test_fraction=test_fraction,
            seed=seed,
            source=Path(root) / "images",
        )
        train = [by_stem[s] for s in split.train]
        val = val if val_root is not None else [by_stem[s] for s in split.val]
    channels = common_channels(train + val)
    train, val = _with_channels(train, channels), _with_channels(val, channels)
    megabytes = sum(s.image.nbytes + s.mask.nbytes for s in train + val) / 2**20
    logger.info(
        "decoded %d training and %d validation images (%d channels, %.0f MiB) in %.1f s",
        len(train), len(val), channels, megabytes, time.perf_counter() - start,
    )  # fmt: skip
    classes = num_classes or 1
    train_set = FolderDataset(
        train,
        transform=train_transforms(patch_size, augment=augment, geometry_on=geometry_on),
        patch_size=patch_size,
        normalization=normalization,
        num_classes=classes,
        augmenting=True,
        device_geometry=DeviceGeometry() if augment and geometry_on == "device" else None,
    )
    val_set = FolderDataset(
        val, transform=None, patch_size=patch_size, normalization=normalization, num_classes=classes
    )
    return train_set, val_set


def _with_channels(samples: list[Sample], channels: int) -> list[Sample]:
    return [
        replace(s, image=np.repeat(s.image, channels, axis=2)) if s.image.shape[2] != channels else s
        for s in samples
    ]


def _size(shape: Sequence[int]) -> str:
    return f"{shape[1]}x{shape[0]}"
