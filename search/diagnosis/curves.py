"""A trial's history as numeric columns, plus the settings and derived numbers every rule reads.

Rows have the keys of ``unet.history.EPOCH_FIELDS``; a missing or None value reads as NaN (unknown), so
histories recorded before a field existed are still diagnosed, by the rules that do not need it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from search.diagnosis.peers import Peers
from search.outcome import json_number
from search.spec.space import flatten_settings

# Epochs needed before a trend (stall, imbalance, overfitting, ...) means anything: with two epochs
# the second is often still the fast early fall, or not yet.
MIN_TREND_EPOCHS = 3


@dataclass(frozen=True)
class Curves:
    """Per-epoch columns (NumPy arrays of equal length) and the settings the trial ran with."""

    train: np.ndarray  # train loss
    val: np.ndarray  # val loss
    dice: np.ndarray  # val Dice, NaN read as 0 (no measurable overlap)
    train_dice: np.ndarray  # NaN where not recorded
    pred_fg: np.ndarray  # share of val pixels predicted foreground
    true_fg: np.ndarray  # share of val pixels labelled foreground
    grad: np.ndarray
    grad_max: np.ndarray
    grad_first: np.ndarray
    grad_last: np.ndarray
    input_std: float  # of the first epoch's inputs; NaN if unknown
    input_max: float
    initial_val: float  # the untrained model's val loss (before the first step); NaN if not recorded
    settings: Mapping[str, Any]  # flat: "learning_rate", "loss", "model.norm", ...
    peers: Peers = field(default_factory=Peers)  # the other trials at equal epochs (none: judged alone)

    @property
    def n(self) -> int:
        return len(self.train)

    @property
    def learning_rate(self) -> float:
        return to_float(self.settings.get("learning_rate"))

    @property
    def lr_text(self) -> str:
        lr = self.learning_rate
        return f" with learning rate {lr:.2g}" if math.isfinite(lr) else ""

    def setting(self, name: str) -> Any:
        """A setting by its flat name (``model.norm``), or None when the trial's settings lack it."""
        return self.settings.get(name)

    @property
    def train_fall(self) -> float:
        """How far the train loss fell below its first epoch's, as a share of it."""
        return fall(self.train[0], float(np.nanmin(self.train)))

    @property
    def has_train_dice(self) -> bool:
        return bool(np.isfinite(self.train_dice).any())

    @property
    def best_train_dice(self) -> float:
        return float(np.nanmax(self.train_dice)) if self.has_train_dice else math.nan

    @property
    def true_share(self) -> float:
        """The validation set's foreground share (the same every epoch), NaN if not recorded."""
        finite = self.true_fg[np.isfinite(self.true_fg)]
        return float(finite[-1]) if len(finite) else math.nan

    @property
    def chance_dice(self) -> float:
        """Dice of predicting every pixel foreground, ``2p / (1 + p)``: what no skill reaches at most.

        A predictor without information about where the objects are, predicting a share ``q``,
        expects ``2pq / (p + q)``, which is highest for ``q = 1``.
        """
        p = self.true_share
        return 2 * p / (1 + p) if math.isfinite(p) else math.nan

    def flood_ratio(self, epoch_index: int) -> float:
        """Predicted over true foreground share at an epoch (inf when there is no true foreground)."""
        p, q = self.true_fg[epoch_index], self.pred_fg[epoch_index]
        if not (math.isfinite(p) and math.isfinite(q)):
            return math.nan
        return q / p if p > 0 else (math.inf if q > 0 else 1.0)


def read_curves(
    history: Sequence[Mapping[str, Any]], settings: Mapping[str, Any], *, peers: Peers | None = None
) -> Curves:
    """Columns of ``history``; ``settings`` flattened (``{"model": {"norm": ...}}`` -> ``model.norm``)."""

    def column(key: str) -> np.ndarray:
        return np.array([to_float(row.get(key)) for row in history], dtype=float)

    flat = flatten_settings(settings)
    if not math.isfinite(to_float(flat.get("learning_rate"))):
        flat["learning_rate"] = to_float(history[0].get("learning_rate"))
    dice = column("val_dice")
    return Curves(
        train=column("train_loss"),
        val=column("val_loss"),
        dice=np.where(np.isfinite(dice), dice, 0.0),
        train_dice=column("train_dice"),
        pred_fg=column("val_pred_fg"),
        true_fg=column("val_true_fg"),
        grad=column("grad_norm"),
        grad_max=column("grad_norm_max"),
        grad_first=column("grad_norm_first"),
        grad_last=column("grad_norm_last"),
        input_std=to_float(history[0].get("input_std")),
        input_max=to_float(history[0].get("input_max")),
        initial_val=to_float(history[0].get("initial_val_loss")),
        settings=flat,
        peers=peers or Peers(),
    )


def base_evidence(c: Curves) -> dict[str, float | int | str]:
    """The numbers every diagnosis reports."""
    best = int(np.argmax(c.dice))
    evidence: dict[str, float | int | str] = {
        "epochs": c.n,
        "learning_rate": json_number(c.learning_rate),
        "first_train_loss": json_number(c.train[0]),
        "last_train_loss": json_number(c.train[-1]),
        "first_val_loss": json_number(c.val[0]),
        "last_val_loss": json_number(c.val[-1]),
        "best_dice": float(c.dice[best]),
        "best_dice_epoch": best + 1,
        "last_dice": float(c.dice[-1]),
    }
    if math.isfinite(c.initial_val):
        evidence["initial_val_loss"] = c.initial_val
    if c.has_train_dice:
        evidence["best_train_dice"] = json_number(c.best_train_dice)
        evidence["last_train_dice"] = json_number(c.train_dice[-1])
    if math.isfinite(c.true_share):
        evidence["true_fg_share"] = c.true_share
        evidence["last_pred_fg_share"] = json_number(c.pred_fg[-1])
    return evidence


def to_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def fall(reference: float, value: float) -> float:
    """How far ``value`` is below ``reference``, relative to its magnitude (negative: above it)."""
    if reference == 0 or not math.isfinite(reference):
        return 0.0
    return float((reference - value) / abs(reference))


def largest_jump(values: np.ndarray) -> tuple[float, int]:
    """The largest relative rise between consecutive values, and the 1-based index it starts from."""
    rises = [-fall(values[i - 1], values[i]) for i in range(1, len(values))]
    if not rises:
        return 0.0, 0
    at = int(np.argmax(rises))
    return float(rises[at]), at + 1
