"""What can go wrong with the study store, as exceptions whose one-line message names the fix."""

from __future__ import annotations


class StoreError(Exception):
    """The study store cannot be opened or used; the one-line message names the fix, never a password."""


class StoreReadOnlyError(StoreError):
    """The store can be read but not written (a read-only file, directory or mount)."""


class StoreLostError(StoreError):
    """The store went away during a run: its file was deleted, replaced or truncated, or the server
    stayed unreachable for longer than the retry window. Work written since may be lost."""
