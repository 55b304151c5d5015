"""Advice shared by several rules: the change to suggest, as settings and in words."""

from __future__ import annotations

import math
from typing import Any

from search.diagnosis.curves import Curves

# Learning rates below these are "low" for the optimizer: Adam's usual range starts near 1e-4,
# SGD with momentum's near 1e-3. A stalled run below them gets the typical rate suggested instead.
LOW_LEARNING_RATE = {"adam": 1e-4, "adamw": 1e-4, "sgd": 1e-3}
TYPICAL_LEARNING_RATE = {"adam": 1e-3, "adamw": 1e-3, "sgd": 3e-2}


def higher_learning_rate(c: Curves) -> tuple[float | None, str]:
    """The learning rate to suggest for a run that learns too slowly, and why; None if it is not low."""
    lr = c.learning_rate
    optimizer = str(c.setting("optimizer") or "adam")
    low = LOW_LEARNING_RATE.get(optimizer, 1e-4)
    if not math.isfinite(lr):
        return None, "learning rate unknown"
    if lr < low:
        return TYPICAL_LEARNING_RATE.get(optimizer, 1e-3), f"learning rate {lr:.2g} is low for {optimizer}"
    if lr < 10 * low:
        return float(f"{lr * 10:.2g}"), f"learning rate {lr:.2g} may be too low"
    return None, f"learning rate {lr:.2g} is not low"


def normalisation_change(c: Curves) -> tuple[dict[str, Any], str]:
    """Batch norm for a model without normalisation layers, else a 10x higher learning rate."""
    norm = c.setting("model.norm")
    if norm in (None, "none"):
        return {"model.norm": "batch"}, "use batch or group norm (model.norm: batch)"
    lr = c.learning_rate
    if math.isfinite(lr):
        return {"learning_rate": float(f"{lr * 10:.2g}")}, f"try a 10x higher learning rate ({lr * 10:.2g})"
    return {}, "try a higher learning rate"


def lower_learning_rate(c: Curves, factor: float) -> dict[str, float]:
    """``factor`` times lower, and no higher than 3x the optimizer's usual rate (a rate 1000x too high
    divided by 10 is still too high)."""
    lr = c.learning_rate
    if not math.isfinite(lr):
        return {}
    optimizer = str(c.setting("optimizer") or "adam")
    ceiling = 3 * TYPICAL_LEARNING_RATE.get(optimizer, 1e-3)
    return {"learning_rate": float(f"{min(lr / factor, ceiling):.2g}")}
