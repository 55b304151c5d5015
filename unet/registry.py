"""Name lookup for the plain-dict registries (losses, norms, optimizers ...), with a "did you mean"."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TypeVar

from unet.errors import ConfigError

T = TypeVar("T")


def look_up(registry: Mapping[str, T], name: str, *, what: str) -> T:
    """Return ``registry[name]``, or raise a ``ConfigError`` listing the valid names.

    Args:
        registry: the plain dict of names to builders.
        name: the name the user gave.
        what: what the name stands for, for the message ("loss", "norm" ...).

    Raises:
        ConfigError: the name is unknown; the message suggests the nearest valid name.
    """
    try:
        return registry[name]
    except (KeyError, TypeError):
        pass
    valid = sorted(registry)
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown {what} {name!r}: choose one of {', '.join(valid)}.{hint}")
