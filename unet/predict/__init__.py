"""The command line ``python -m unet.predict`` (in ``unet.predict.cli``).

The Python API is ``unet.load_model`` and ``unet.predict`` (``unet.inference``). This package stays
light (``unet`` imports it on every import): ``main`` imports the CLI, and torch, when called.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m unet.predict`` with ``argv`` (``sys.argv[1:]`` when None); returns the exit status."""
    from unet.predict import cli

    return cli.main(argv)


__all__ = ["main"]
