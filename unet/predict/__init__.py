"""The command line ``python -m unet.predict`` (in ``unet.predict.cli``).

The Python API is ``unet.load_model`` and ``unet.predict`` (``unet.inference``).
"""

from __future__ import annotations

from unet.predict.cli import main

__all__ = ["main"]
