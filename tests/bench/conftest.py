"""Fixtures of the benchmark tests: eight real images, and one ``python -m bench --quick`` run they share.

The quick run takes minutes on a loaded 2-core CI machine, so it runs once per test session: the
end-to-end test checks what it assembled (every section in the results files and the report), and each
section's own tests read that section's figures from it instead of running the section again.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pytest

from bench.__main__ import main
from bench.paths import DSB


@pytest.fixture(scope="session")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight real images and masks of the DSB 2018 subset (both looks: gray and colour)."""
    root = tmp_path_factory.mktemp("dsb-small")
    for sub in ("images", "masks"):
        (root / sub).mkdir()
    stems = sorted(p.stem for p in (DSB / "images").glob("*.png"))[:8]
    for stem in stems:
        shutil.copy(DSB / "images" / f"{stem}.png", root / "images" / f"{stem}.png")
        shutil.copy(DSB / "masks" / f"{stem}.png", root / "masks" / f"{stem}.png")
    return root


@dataclass(frozen=True)
class QuickRun:
    """What ``python -m bench --quick --data SMALL_FOLDER`` left: its exit status, files and report."""

    status: int
    out: Path  # the results folder
    report: Path  # the markdown report
    data: Path  # the --data folder (the efficiency section's real-image task)
    said: tuple[str, ...]  # the lines it wrote to stderr (the sections' progress lines among them)

    @property
    def results(self) -> dict[str, Any]:
        return json.loads((self.out / "results.json").read_text())

    def section(self, name: str) -> dict[str, Any]:
        """A section's figures, from its own ``OUT/<name>.json``."""
        return json.loads((self.out / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def quick_run(small_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """Every section at CI sizes, once per session, with ``--data`` on the eight images."""
    root = tmp_path_factory.mktemp("bench-quick")
    out, report = root / "results", root / "BENCHMARKS.md"
    said = _Tee(sys.stderr)
    with contextlib.redirect_stderr(said):
        status = main(["--quick", "--out", str(out), "--markdown", str(report), "--data", str(small_folder)])
    return QuickRun(status, out, report, small_folder, tuple(said.getvalue().splitlines()))


class _Tee(io.StringIO):
    """Keeps what is written and passes it on to ``stream`` (a failed test still shows the run's output)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(text)
        return super().write(text)

    def flush(self) -> None:
        self.stream.flush()
