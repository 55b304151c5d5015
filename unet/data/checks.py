"""Checks of the numeric arguments of the data functions; each failure is a one-line ``ConfigError``."""

from __future__ import annotations

import math
from typing import Any

from unet.errors import ConfigError


def check_int(value: Any, name: str, *, low: int, high: int | None = None) -> int:
    """Return ``value`` if it is an integer in ``[low, high]``, else raise ``ConfigError`` quoting it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer but got {value!r}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low} but got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be <= {high} but got {value}")
    return value


def check_float(
    value: Any, name: str, *, low: float, high: float, open_low: bool = False, open_high: bool = False
) -> float:
    """Return ``value`` as a float if it lies between ``low`` and ``high`` (ends excluded when open)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number but got {value!r}")
    if value < low or value > high or (open_low and value == low) or (open_high and value == high):
        interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ConfigError(f"{name} must be in {interval} but got {value}")
    return float(value)


def check_num_classes(value: Any) -> int | None:
    """``num_classes`` is ``None`` (binary masks only) or an integer >= 1 (1: binary, >= 2: classes)."""
    return None if value is None else check_int(value, "num_classes", low=1)
