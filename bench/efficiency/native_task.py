"""The real-image task at the size users train: a dataset folder at native resolution (FolderTask's space).

:class:`FolderTask` keeps every trial to seconds by downscaling each image and keeping a 32 px centre crop.
:class:`NativeFolderTask` is the same task (the same six-dimensional space, sample of configurations and
snapping; only the data differ) on the data as the service trains on a folder: the images at their own
resolution and channels through :class:`unet.folder_source.FolderSource` with ``patch_size=patch``, so
training draws a random ``patch x patch`` crop of each image per epoch with the augmentation and
normalisation of a user's run, and validation runs on the whole held-out images (tiled with ``patch``,
as ``unet.fit`` validates a folder study). ``fit`` seeds weights, data order and augmentation from the
configuration's seed, so a table row is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from torch.utils.data import Dataset

from bench.efficiency.folder_task import FolderTask
from unet.config import TrainConfig


@dataclass(frozen=True)
class NativeFolderTask(FolderTask):
    """A dataset folder at native resolution: random ``patch`` px training crops, whole-image validation."""

    patch: int = 128  # side of the training patches (FolderSource.patch_size), and the validation tile
    # Fewer epochs and configurations than the 32 px task: a native-resolution trial takes a minute or more.
    epochs: int = 6
    n_configs: int = 28

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        del data["short_side"], data["size"]  # the 32 px task's preprocessing, not done here
        return data

    @property
    def name(self) -> str:
        return f"{super().name}-native"

    @property
    def patch_side(self) -> int:
        return self.patch

    @cached_property
    def _channels(self) -> int:
        train, _ = self._read()
        return train.in_channels

    def datasets(self) -> tuple[Dataset, Dataset]:
        """The service's own training (random patches, augmented) and validation (whole images) sets."""
        return self._read()

    def train_config(self, params: Mapping[str, Any]) -> TrainConfig:
        """FolderTask's configuration with the images' own channel count (1 or 3)."""
        config = super().train_config(params)
        return replace(config, model=replace(config.model, in_channels=self._channels))

    def describe(self) -> str:
        return (
            f"real images from `{super().name}` at native resolution: {self.n_train} + {self.n_val} images, "
            f"{self._channels} channel(s), trained on random {self.patch} x {self.patch} px patches with the "
            f"service's augmentation and validated on the whole held-out images; {self.epochs} epochs per "
            f"trial; a random sample of {self.n_configs} configurations of a six-dimensional space "
            "(learning rate x batch size x depth x filters x normalisation x loss), proposals snapped to "
            "the nearest trained one"
        )
