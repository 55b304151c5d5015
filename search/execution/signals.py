"""SIGTERM handled like Ctrl-C, so a preempted worker marks its trials interrupted and exits cleanly."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (e.g. a pod's preemption) raises KeyboardInterrupt, as Ctrl-C does.

    Only the main thread may set signal handlers: elsewhere the block runs with the handler it has.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
