"""What the study's other trials showed at equal epochs: the reference a short trial is judged against.

Under successive halving most trials end after one to three epochs, too few for a trend of their own.
What one epoch can still show is a comparison: a first-epoch val loss orders of magnitude above the other
trials' (it exploded), or a val Dice at chance where the others have learned by the same epoch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class Peers:
    """The other trials' epoch values, by epoch (1-based); NaN values are left out."""

    first_val_losses: tuple[float, ...] = ()  # each other trial's val loss after epoch 1
    dice_by_epoch: Mapping[int, tuple[float, ...]] = field(default_factory=dict)  # their val Dice per epoch

    @property
    def median_first_val_loss(self) -> float:
        """The median of the other trials' first-epoch val losses (NaN without any)."""
        finite = [v for v in self.first_val_losses if math.isfinite(v)]
        return float(statistics.median(finite)) if finite else math.nan

    def dice_at(self, epoch: int) -> tuple[float, ...]:
        """The other trials' val Dice at ``epoch`` (only those that reached it)."""
        return tuple(self.dice_by_epoch.get(epoch, ()))

    @classmethod
    def from_epochs(cls, epochs: pd.DataFrame, *, exclude_trial_id: int | None = None) -> Peers:
        """The peers in a study's epoch rows (``search.store.epochs.EpochStore.read_epochs``).

        Args:
            epochs: rows with ``trial_id``, ``epoch``, ``val_loss`` and ``val_dice``.
            exclude_trial_id: the trial being judged, left out of its own reference.
        """
        rows = epochs if exclude_trial_id is None else epochs[epochs["trial_id"] != exclude_trial_id]
        first = rows[rows["epoch"] == 1]["val_loss"].astype(float)
        dice: dict[int, tuple[float, ...]] = {}
        for epoch, group in rows.groupby("epoch"):
            values = tuple(float(v) for v in group["val_dice"].astype(float) if math.isfinite(v))
            if values:
                dice[int(epoch)] = values
        return cls(tuple(float(v) for v in first if math.isfinite(v)), dice)
