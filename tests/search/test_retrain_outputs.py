"""python -m search.retrain under faults and bad --out, on every store: one line, exit 2, nothing mixed.

Issue 22: ``--out`` a file, under a file, read-only or on a full disk gave tracebacks (case 9), and a run
into an existing folder wrote over the earlier run file by file (case 8). The study is crafted (one
COMPLETE trial of the report tests, on 16 synthetic 32x32 images), so a retrain takes seconds.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from output_cases import BAD_DESTINATIONS, FOREIGN_FILES, bad_destination, snapshot
from test_report import SMALL, craft_study

import unet.checkpoint
from search.retrain import main
from search.store.engine import open_storage


@pytest.fixture
def crafted(storage_url: str) -> str:
    storage = open_storage(storage_url)
    craft_study(storage, "crafted", SMALL[:1])
    storage.remove_session()
    storage.engine.dispose()
    return storage_url


def _retrain(url: str, out: Path) -> int:
    return main(["--study", "crafted", "--storage", url, "--out", str(out), "--quiet", "--threads", "1"])


def _one_line_error(capsys: pytest.CaptureFixture[str], message: str) -> None:
    """One error line, the last one (after the run's header when it failed while training)."""
    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and message in errors[0] and "Traceback" not in "".join(lines), lines


@pytest.mark.parametrize(
    ("case", "message"),
    [*BAD_DESTINATIONS, FOREIGN_FILES],
)
def test_a_bad_destination_is_one_line_exit_2_before_training(
    crafted: str,
    tmp_path: Path,
    fail_writes_under: Callable[[Path, int], None],
    capsys: pytest.CaptureFixture[str],
    case: str,
    message: str,
) -> None:
    place = tmp_path / "dest"
    place.mkdir()
    out = bad_destination(place, case, fail_writes_under)
    before = snapshot(place)
    assert _retrain(crafted, out) == 2
    _one_line_error(capsys, message)
    assert snapshot(place) == before and {p.name for p in place.iterdir()} <= {"out", "file"}


def test_a_disk_filling_up_leaves_the_earlier_run_whole(
    crafted: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "best"
    assert _retrain(crafted, out) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "last.pt",
        "metrics.csv",
        "model.pt",
        "source.yaml",
    ]
    (out / "source.yaml").write_text(yaml.safe_dump({"run": "first"}))  # to tell the runs apart
    before = snapshot(out.parent)
    real = unet.checkpoint.write_atomic

    def full(path: Path, *args: object, **kwargs: object) -> None:
        if path.name == "model.pt":  # metrics.csv of every epoch written, the checkpoints not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(unet.checkpoint, "write_atomic", full)
    capsys.readouterr()
    assert _retrain(crafted, out) == 2
    _one_line_error(capsys, f"--out {out} was not written (No space left on device; it is left as it was)")
    assert snapshot(out.parent) == before
