"""Files written whole or not at all: the one write path for run folders, reports and exports.

Standard library only, so the report's tables and other light modules can write without importing torch.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unet.outputs import file_mode


def write_atomic(path: Path, write: Callable[[Any], None], *, binary: bool = False) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file.

    The file gets the mode the umask gives (``unet.outputs.file_mode``), not ``mkstemp``'s private 0600:
    masks, scores and models are for others to read too.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb" if binary else "w", newline=None if binary else "") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
