"""The search-efficiency task: a small, hard synthetic segmentation problem and its space of configurations.

Hard means that the hyperparameters decide the outcome: low-contrast, noisy 32 x 32 images with about 7 %
foreground, on which (with Adam and a cosine schedule over 12 epochs) high learning rates diverge or
collapse to background, low ones stall, and BCE or focal losses often predict background for several
epochs before they "bloom". ``bench.efficiency.analysis`` checks that this holds on the built table.

The space is a full grid (learning rate x loss x normalisation), so that every configuration a sampler
proposes maps to exactly one trained row of the table (``HardTask.snap``): the learning rate is searched
as a log-uniform float, as the service searches it, and snapped to the nearest grid value in log space.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from torch.utils.data import Dataset

from unet.config import ModelConfig, TrainConfig
from unet.data import synthetic_datasets


class Task(Protocol):
    """What the table, the replay and the analysis need of a task (``HardTask``, ``FolderTask``)."""

    @property
    def epochs(self) -> int: ...
    @property
    def n_train(self) -> int: ...
    @property
    def learning_rates(self) -> tuple[float, ...]: ...
    def to_dict(self) -> dict[str, Any]: ...
    def datasets(self) -> tuple[Dataset, Dataset]: ...
    def grid(self) -> list[dict[str, Any]]: ...
    def space(self) -> dict[str, dict[str, Any]]: ...
    def snap(self, params: Mapping[str, Any]) -> int: ...
    def snap_distance(self, params: Mapping[str, Any]) -> float: ...
    def train_config(self, params: Mapping[str, Any]) -> TrainConfig: ...
    def study_dict(self, name: str) -> dict[str, Any]: ...
    def describe(self) -> str: ...


def train_config(settings: Mapping[str, Any], *, epochs: int) -> TrainConfig:
    """A task's one-channel binary ``TrainConfig`` on the CPU from flat settings (model fields under
    ``model.``, the rest ``TrainConfig``'s), trained for ``epochs``."""
    model = {k.removeprefix("model."): v for k, v in settings.items() if k.startswith("model.")}
    train = {k: v for k, v in settings.items() if not k.startswith("model.")}
    return TrainConfig(
        model=ModelConfig(in_channels=1, num_classes=1, **model), epochs=epochs, device="cpu", **train
    )


# Twelve learning rates, 0.4 decades apart, from 1e-5 (stalls) to 0.25 (diverges or collapses).
LEARNING_RATES: tuple[float, ...] = tuple(float(f"{10 ** (-5 + 0.4 * k):.3g}") for k in range(12))


@dataclass(frozen=True)
class HardTask:
    """Data settings, training settings and the grid of searched values; all of it goes into the cache key."""

    n_train: int = 64  # training images per epoch (the unit of compute: epochs x images)
    n_val: int = 32  # validation images
    size: int = 32  # image side in pixels
    foreground_fraction: float = 0.07  # share of foreground pixels aimed at
    contrast: float = 0.22  # shape brightness above the background (the stock default is 0.35)
    noise: float = 0.22  # pixel noise standard deviation (the stock default is 0.15)
    data_seed: int = 0  # seed of the synthetic images
    epochs: int = 12  # epochs of a trial that is not stopped (budget.max_epochs)
    learning_rates: tuple[float, ...] = LEARNING_RATES  # searched log-uniformly between the extremes
    losses: tuple[str, ...] = ("dice_bce", "dice", "bce", "focal")  # binary losses
    norms: tuple[str, ...] = ("batch", "instance", "group")  # normalisation layers
    # Settings every configuration shares (TrainConfig fields, model fields under "model.").
    fixed: Mapping[str, Any] = field(
        default_factory=lambda: {
            "optimizer": "adam",
            "scheduler": "cosine",
            "batch_size": 16,
            "model.depth": 3,
            "model.base_filters": 8,
        }
    )

    def to_dict(self) -> dict[str, Any]:
        """The task as plain JSON data (what the table's cache key hashes)."""
        data = asdict(self)
        data["fixed"] = dict(self.fixed)
        return data

    def datasets(self) -> tuple[Dataset, Dataset]:
        """The training and validation sets (deterministic from ``data_seed``)."""
        return synthetic_datasets(
            n_train=self.n_train,
            n_val=self.n_val,
            size=self.size,
            foreground_fraction=self.foreground_fraction,
            seed=self.data_seed,
            contrast=self.contrast,
            noise=self.noise,
        )

    def grid(self) -> list[dict[str, Any]]:
        """Every configuration of the grid, as search parameters under the service's names."""
        return [
            {"learning_rate": lr, "loss": loss, "model.norm": norm}
            for lr, loss, norm in itertools.product(self.learning_rates, self.losses, self.norms)
        ]

    def space(self) -> dict[str, dict[str, Any]]:
        """The grid as a study-file space: log-uniform learning rate, categorical loss and norm."""
        return {
            "learning_rate": {
                "type": "float",
                "low": min(self.learning_rates),
                "high": max(self.learning_rates),
                "log": True,
            },
            "loss": {"type": "categorical", "choices": list(self.losses)},
            "model.norm": {"type": "categorical", "choices": list(self.norms)},
        }

    def snap(self, params: Mapping[str, Any]) -> int:
        """Index in ``grid()`` of the configuration nearest to ``params`` (learning rate in log space)."""
        logs = np.log10(np.asarray(self.learning_rates))
        lr = int(np.argmin(np.abs(logs - math.log10(float(params["learning_rate"])))))
        loss = self.losses.index(params["loss"])
        norm = self.norms.index(params["model.norm"])
        return (lr * len(self.losses) + loss) * len(self.norms) + norm

    def snap_distance(self, params: Mapping[str, Any]) -> float:
        """How far ``params`` is from its row: the learning rate's distance in decades (a full grid)."""
        row = self.grid()[self.snap(params)]
        return abs(math.log10(float(params["learning_rate"])) - math.log10(row["learning_rate"]))

    def train_config(self, params: Mapping[str, Any]) -> TrainConfig:
        """The ``TrainConfig`` of one configuration: the fixed settings plus ``params``, on the CPU."""
        return train_config({**self.fixed, **params}, epochs=self.epochs)

    def describe(self) -> str:
        """One line for the report."""
        return (
            f"synthetic segmentation, {self.n_train} + {self.n_val} images of {self.size} x {self.size} px, "
            f"~{self.foreground_fraction:.0%} foreground, contrast {self.contrast}, noise {self.noise}; "
            f"{self.epochs} epochs per trial; a grid of {len(self.grid())} configurations (learning rate x "
            "loss x normalisation)"
        )

    def study_dict(self, name: str) -> dict[str, Any]:
        """A study file (as data) for this task: its data, space and fixed settings, every other default."""
        fixed: dict[str, Any] = {k: v for k, v in self.fixed.items() if not k.startswith("model.")}
        fixed["model"] = {
            k.removeprefix("model."): v for k, v in self.fixed.items() if k.startswith("model.")
        }
        fixed["device"] = "cpu"
        return {
            "name": name,
            "data": {
                "source": "synthetic",
                "synthetic": {
                    "n_train": self.n_train,
                    "n_val": self.n_val,
                    "size": self.size,
                    "foreground_fraction": self.foreground_fraction,
                    "seed": self.data_seed,
                    "contrast": self.contrast,
                    "noise": self.noise,
                },
            },
            "space": self.space(),
            "fixed": fixed,
            "budget": {"max_epochs": self.epochs},
        }


# The CI task: a 2 x 2 x 1 grid of 3 epochs on 16 x 16 images, a few seconds to build.
QUICK_TASK = HardTask(
    n_train=16,
    n_val=8,
    size=16,
    epochs=3,
    learning_rates=(1e-3, 1e-1),
    losses=("dice_bce", "bce"),
    norms=("batch",),
    fixed={
        "optimizer": "adam",
        "scheduler": "cosine",
        "batch_size": 8,
        "model.depth": 2,
        "model.base_filters": 4,
    },
)
