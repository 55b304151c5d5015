"""The pruning rules' range checks: the one check, for a rule built directly or by a study file."""

from __future__ import annotations

import math

from unet.errors import ConfigError


def is_real(value: object) -> bool:
    """Whether ``value`` is an int or float (not a bool) and not NaN."""
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def check_int(value: object, name: str, *, low: int) -> None:
    """Raise ConfigError unless ``value`` is an integer (not a bool) >= ``low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low} but got {value!r}")
