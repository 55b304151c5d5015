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
    "train_dice",
    "val_pred_fg",
    "val_true_fg",
    "val_class_shares",
    "grad_norm_first",
    "grad_norm_last",
    "input_mean",
    "input_std",
    "input_max",
    "initial_val_loss",
    "train_s",
    "val_s",
    "evidence_s",
    "data_wait_s",
)
# Fields holding text (JSON) rather than a number; every other field but ``epoch`` is a float.
TEXT_FIELDS: tuple[str, ...] = ("val_class_shares",)


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
    # Evidence for the diagnosis (``unet.evidence``), measured on work the epoch did anyway:
    train_dice: float = float("nan")  # Dice of sampled training steps' own predictions (mean over fg classes)
    val_pred_fg: float = float("nan")  # share of validation pixels predicted foreground (any fg class)
    val_true_fg: float = float("nan")  # share of validation pixels that are foreground in the masks
    val_class_shares: str = "{}"  # JSON {"class": [predicted share, true share]} per foreground class
    grad_norm_first: float = float("nan")  # mean L2 norm of the first layer's weight gradient per step
    grad_norm_last: float = float("nan")  # the same for the last layer (the 1x1 output convolution)
    input_mean: float = float("nan")  # mean of the model's training inputs (the sampled steps')
    input_std: float = float("nan")  # their standard deviation (about 1 for z-scored images)
    input_max: float = float("nan")  # their largest absolute value (255 for raw 8-bit images)
    # The untrained model's val loss (before the first step), the same in every epoch's record: the
    # reference a loss that exploded in its first epoch is measured against.
    initial_val_loss: float = float("nan")
    # Where ``seconds`` went (wall seconds; the rest is bookkeeping: scheduler, best-weights copy):
    train_s: float = float("nan")  # training steps: forward, loss, backward, optimizer (the two below apart)
    val_s: float = float("nan")  # validation pass (``unet.validation.evaluate``)
    evidence_s: float = float("nan")  # gathering evidence and gradient statistics (``unet.evidence``)
    data_wait_s: float = float("nan")  # waiting for the training loader's next batch

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
