"""Epoch rows as fit() records them, from columns of numbers."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from unet.history import EpochRecord


def rows(
    train: Sequence[float],
    val: Sequence[float],
    dice: Sequence[float],
    *,
    train_dice: Sequence[float] | None = None,
    pred_fg: Sequence[float] | None = None,
    true_fg: float = math.nan,
    grad: Sequence[float] | None = None,
    grad_max: Sequence[float] | None = None,
    grad_first: Sequence[float] | None = None,
    grad_last: Sequence[float] | None = None,
    input_std: float = 1.0,
    input_max: float = 4.0,
    learning_rate: float = 1e-3,
) -> list[dict[str, float | str]]:
    """One EpochRecord.to_dict() per epoch; evidence not given is NaN (as in a store from before it)."""
    n = len(train)

    def col(values: Sequence[float] | None, default: float = math.nan) -> list[float]:
        return list(values) if values is not None else [default] * n

    t_dice, p_fg = col(train_dice), col(pred_fg)
    g, g_max, g_first, g_last = col(grad, 1.0), col(grad_max, 2.0), col(grad_first), col(grad_last)
    return [
        EpochRecord(
            epoch=i + 1,
            train_loss=train[i],
            val_loss=val[i],
            val_dice=dice[i],
            val_iou=dice[i] / (2 - dice[i]) if math.isfinite(dice[i]) else math.nan,
            learning_rate=learning_rate,
            grad_norm=g[i],
            grad_norm_max=g_max[i],
            seconds=1.0,
            images_per_s=10.0,
            train_dice=t_dice[i],
            val_pred_fg=p_fg[i],
            val_true_fg=true_fg,
            val_class_shares=json.dumps({"1": [p_fg[i], true_fg]}),
            grad_norm_first=g_first[i],
            grad_norm_last=g_last[i],
            input_mean=0.0,
            input_std=input_std,
            input_max=input_max,
        ).to_dict()
        for i in range(n)
    ]
