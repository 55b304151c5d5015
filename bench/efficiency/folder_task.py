"""The second search-efficiency task: real images from a dataset folder, over a space like ``unet-full``'s.

The folder (``DIR/images``, ``DIR/masks``) is read as every command reads one, through
``unet.folder_source.FolderSource``: inspected by the dataset doctor (its first error raised with the
fix), split into training and validation images (``val_fraction``, seed 0) and decoded. Each decoded
image is then turned gray (channel mean), downscaled to ``short_side`` pixels on its shorter side (OpenCV
area interpolation for images, nearest for masks), cut to its central ``size x size`` square, z-scored
and held in memory. This keeps every trial to seconds on a shared 2-core CPU (the table builds in tens
of minutes there); nuclei become a few pixels wide, which keeps the task hard.

The space has six dimensions (learning rate, batch size, depth, filter count, normalisation and loss), too
many for a full grid, so the table trains a fixed random sample of ``n_configs`` configurations (seeded
by ``config_seed``; learning rates log-uniform, the rest uniform over their choices). A configuration a
sampler proposes is replaced by the nearest trained one (``FolderTask.snap``), with the distance

    |log10 lr - log10 lr'| / (log10 range)  +  sum over batch size, depth, filters of |index difference| /
    (choices - 1)  +  sum over normalisation and loss of (1 if different else 0)

(each dimension at most 1; ties go to the first row of the sample). ``bench.efficiency.analysis``
reports how far the proposals of each strategy had to move, so that a strategy the snapping favours
shows up.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from bench.efficiency.task import train_config
from unet.config import TrainConfig
from unet.data import FolderDataset, SyntheticDataset
from unet.data.files import paired_files
from unet.data.folder import Sample
from unet.folder_source import FolderSource

ORDINAL = ("batch_size", "model.depth", "model.base_filters")  # numeric choices: distance by index
NOMINAL = ("model.norm", "loss")  # unordered choices: distance 0 or 1


@dataclass(frozen=True)
class FolderTask:
    """A dataset folder, its preprocessing, the space and the sample of trained configurations."""

    folder: str  # the dataset folder (images/ and masks/)
    short_side: int = 64  # images are downscaled to this shorter side first
    size: int = 32  # then their central size x size crop is kept
    val_fraction: float = 0.25  # share of the images held out for validation (seed 0)
    epochs: int = 8  # epochs of a trial that is not stopped (budget.max_epochs)
    n_configs: int = 48  # configurations trained (the table's rows)
    config_seed: int = 0  # seed of the sample of configurations
    lr_low: float = 1e-4
    lr_high: float = 1e-1
    batch_sizes: tuple[int, ...] = (4, 8, 16)
    depths: tuple[int, ...] = (2, 3, 4)
    filters: tuple[int, ...] = (4, 8, 16)
    norms: tuple[str, ...] = ("batch", "instance", "group")
    losses: tuple[str, ...] = ("dice_bce", "dice", "bce", "focal")
    fixed: Mapping[str, Any] = field(default_factory=lambda: {"optimizer": "adam", "scheduler": "cosine"})

    def to_dict(self) -> dict[str, Any]:
        """The task as plain JSON data, with a digest of the folder's files (what the cache key hashes)."""
        data = asdict(self)
        data["fixed"] = dict(self.fixed)
        data["folder"] = self.name  # the contents identify the data, wherever the folder lives
        data["folder_digest"] = self.folder_digest
        return data

    @cached_property
    def folder_digest(self) -> str:
        digest = hashlib.sha256()
        for pair in paired_files(self.folder):
            for path in (pair.image, pair.mask):
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    @property
    def name(self) -> str:
        return Path(self.folder).name

    @property
    def patch_side(self) -> int:
        """The folder source's training patch side (the decoded images are cropped here, not by it)."""
        return self.size

    @property
    def source(self) -> FolderSource:
        """The folder as ``unet.folder_source`` reads it: binary masks, this task's split and patch side."""
        return FolderSource(
            Path(self.folder),
            val_fraction=self.val_fraction,
            seed=0,
            num_classes=1,
            patch_size=self.patch_side,
        )

    def _read(self) -> tuple[FolderDataset, FolderDataset]:
        """The decoded training and validation images, through the folder source's whole sequence."""
        depth = max(self.depths)
        plan = self.source.plan(self.source.fingerprint(depth=depth), depth=depth)
        return self.source.datasets(plan)

    @cached_property
    def _sizes(self) -> tuple[int, int]:
        train, val = self._read()  # only the counts are kept: a task is pickled to every table job
        return len(train), len(val)

    @property
    def n_train(self) -> int:
        """Training images per epoch (the unit of compute: epochs x images)."""
        return self._sizes[0]

    @property
    def n_val(self) -> int:
        return self._sizes[1]

    @property
    def learning_rates(self) -> tuple[float, ...]:
        """The sampled learning rates, in row order (for the task check's thirds)."""
        return tuple(params["learning_rate"] for params in self.grid())

    def datasets(self) -> tuple[Dataset, Dataset]:
        """The downscaled training and validation sets, in memory."""
        train, val = self._read()
        return self._dataset(train.samples), self._dataset(val.samples)

    def _dataset(self, samples: list[Sample]) -> SyntheticDataset:
        images, masks = [], []
        for sample in samples:
            image = self._crop(sample.image.astype(np.float32).mean(axis=2), cv2.INTER_AREA)
            image = (image - image.mean()) / max(float(image.std()), 1e-6)
            mask = self._crop(sample.mask.astype(np.uint8), cv2.INTER_NEAREST)
            images.append(torch.from_numpy(image)[None])
            masks.append(torch.from_numpy(mask.astype(np.int64)))
        return SyntheticDataset(torch.stack(images), torch.stack(masks), num_classes=1)

    def _crop(self, array: np.ndarray, interpolation: int) -> np.ndarray:
        """Downscale to ``short_side`` on the shorter side, then keep the central ``size`` square."""
        height, width = array.shape[:2]
        scale = self.short_side / min(height, width)
        new_w, new_h = max(round(width * scale), self.size), max(round(height * scale), self.size)
        array = cv2.resize(array, (new_w, new_h), interpolation=interpolation)
        top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
        return np.ascontiguousarray(array[top : top + self.size, left : left + self.size])

    def grid(self) -> list[dict[str, Any]]:
        """The trained configurations (a seeded random sample), as search parameters."""
        return list(self._sample)

    @cached_property
    def _sample(self) -> tuple[dict[str, Any], ...]:
        rng = np.random.default_rng(self.config_seed)
        low, high = math.log10(self.lr_low), math.log10(self.lr_high)
        out = []
        for _ in range(self.n_configs):
            out.append(
                {
                    "learning_rate": float(f"{10 ** rng.uniform(low, high):.3g}"),
                    "batch_size": int(rng.choice(self.batch_sizes)),
                    "model.depth": int(rng.choice(self.depths)),
                    "model.base_filters": int(rng.choice(self.filters)),
                    "model.norm": str(rng.choice(self.norms)),
                    "loss": str(rng.choice(self.losses)),
                }
            )
        return tuple(out)

    def _choices(self, name: str) -> tuple[Any, ...]:
        return {
            "batch_size": self.batch_sizes,
            "model.depth": self.depths,
            "model.base_filters": self.filters,
            "model.norm": self.norms,
            "loss": self.losses,
        }[name]

    @cached_property
    def _coordinates(self) -> np.ndarray:
        """Each trained configuration as a point: normalised log lr, then choice indices."""
        return np.asarray([self._point(p) for p in self._sample], dtype=float)

    def _point(self, params: Mapping[str, Any]) -> list[float]:
        span = math.log10(self.lr_high) - math.log10(self.lr_low)
        lr = (math.log10(float(params["learning_rate"])) - math.log10(self.lr_low)) / span
        point = [lr]
        for name in ORDINAL:
            choices = self._choices(name)
            point.append(choices.index(params[name]) / max(len(choices) - 1, 1))
        point.extend(self._choices(name).index(params[name]) for name in NOMINAL)
        return point

    def distances(self, params: Mapping[str, Any]) -> np.ndarray:
        """The snapping distance (module docstring) from ``params`` to every trained configuration."""
        point = np.asarray(self._point(params), dtype=float)
        rows = self._coordinates
        ordered = np.abs(rows[:, : 1 + len(ORDINAL)] - point[: 1 + len(ORDINAL)]).sum(axis=1)
        nominal = (rows[:, 1 + len(ORDINAL) :] != point[1 + len(ORDINAL) :]).sum(axis=1)
        return ordered + nominal

    def snap(self, params: Mapping[str, Any]) -> int:
        """Index in ``grid()`` of the trained configuration nearest to ``params``."""
        return int(np.argmin(self.distances(params)))  # argmin: the first of equals

    def snap_distance(self, params: Mapping[str, Any]) -> float:
        return float(self.distances(params).min())

    def space(self) -> dict[str, dict[str, Any]]:
        """The study-file space the strategies search (the trained sample stands in for it)."""
        return {
            "learning_rate": {"type": "float", "low": self.lr_low, "high": self.lr_high, "log": True},
            "batch_size": {"type": "categorical", "choices": list(self.batch_sizes)},
            "model.depth": {"type": "int", "low": min(self.depths), "high": max(self.depths)},
            "model.base_filters": {"type": "categorical", "choices": list(self.filters)},
            "model.norm": {"type": "categorical", "choices": list(self.norms)},
            "loss": {"type": "categorical", "choices": list(self.losses)},
        }

    def train_config(self, params: Mapping[str, Any]) -> TrainConfig:
        """The ``TrainConfig`` of one configuration: the fixed settings plus ``params``, on the CPU."""
        return train_config({**self.fixed, **params}, epochs=self.epochs)

    def study_dict(self, name: str) -> dict[str, Any]:
        """A study file (as data) with this task's space: what the replay's strategies read.

        Its data section names the folder, but the replay never loads data through it (the live tier
        runs only on the synthetic task, whose preprocessing the service has).
        """
        return {
            "name": name,
            "data": {"source": "folder", "folder": {"path": str(Path(self.folder).resolve())}},
            "space": self.space(),
            "fixed": {**dict(self.fixed), "device": "cpu"},
            "budget": {"max_epochs": self.epochs},
        }

    def describe(self) -> str:
        return (
            f"real images from `{self.name}`: {self.n_train} + {self.n_val} images, gray, downscaled to a "
            f"{self.short_side} px short side and centre-cropped to {self.size} x {self.size} px; "
            f"{self.epochs} epochs per trial; a random sample of {self.n_configs} configurations of a "
            "six-dimensional space (learning rate x batch size x depth x filters x normalisation x loss), "
            "proposals snapped to the nearest trained one"
        )
