"""Errors raised for bad user input: each message names the problem and the fix in one line."""

from __future__ import annotations


class UNetError(ValueError):
    """Base class of the library's input errors; command-line tools turn it into exit status 2."""


class ConfigError(UNetError):
    """A setting is missing, out of range or unknown."""


class DataError(UNetError):
    """A dataset folder, image or mask cannot be used as it is."""


class CheckpointError(UNetError):
    """A checkpoint file is missing, unreadable, or was not written by this library."""


class OutputError(UNetError):
    """An output folder cannot be written: a file, an input, foreign files in it, no permission or space."""
