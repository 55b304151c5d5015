"""The per-epoch record ``fit()`` produces and hands to its ``on_epoch`` callback."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Column order of metrics CSVs and of the search store's epoch table.
EPOCH_FIELDS: tuple[str, ...] = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_dice",
    "val_iou",
    "learning_rate",
    "grad_norm",
    "grad_norm_max",
    "seconds",
    "images_per_s",
)


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch of training measured. Losses may be NaN/inf when the run diverged."""

    epoch: int  # 1-based epoch number
    train_loss: float  # mean training loss over the epoch's steps
    val_loss: float  # mean validation loss over all validation pixels' batches
    val_dice: float  # Dice over the whole validation set (mean over foreground classes)
    val_iou: float  # IoU over the whole validation set (mean over foreground classes)
    learning_rate: float  # learning rate in force during the epoch
    grad_norm: float  # mean global gradient L2 norm over the epoch's steps (before clipping)
    grad_norm_max: float  # largest global gradient L2 norm of the epoch's steps
    seconds: float  # wall time of the epoch, training and validation
    images_per_s: float  # training images per second (training steps only)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
