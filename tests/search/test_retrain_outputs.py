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


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys: pytest.CaptureFixture[str], message: str) -> None:
    """One error line, the last one (after the run's header when it failed while training)."""
    lines = capsys.readouterr().err.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and message in errors[0] and "Traceback" not in "".join(lines), lines


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("a-file", "is a file: give a folder"),
        ("under-a-file", "a file: choose a path under a folder"),
        ("read-only", "cannot be written (Read-only file system): choose a folder you can write to"),
        ("full", "cannot be written (No space left on device): free some space"),
        ("foreign-files", "holds 1 file(s) this command does not write (notes.txt)"),
    ],
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
    out = place / "out"
    if case == "a-file":
        out.write_text("keep me")
    elif case == "under-a-file":
        (place / "file").write_text("keep me")
        out = place / "file" / "out"
    elif case == "foreign-files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    else:
        fail_writes_under(place, errno.EROFS if case == "read-only" else errno.ENOSPC)
    before = _snapshot(place)
    assert _retrain(crafted, out) == 2
    _one_line_error(capsys, message)
    assert _snapshot(place) == before and {p.name for p in place.iterdir()} <= {"out", "file"}


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
    before = _snapshot(out.parent)
    real = unet.checkpoint.write_atomic

    def full(path: Path, *args: object, **kwargs: object) -> None:
        if path.name == "model.pt":  # metrics.csv of every epoch written, the checkpoints not
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(unet.checkpoint, "write_atomic", full)
    capsys.readouterr()
    assert _retrain(crafted, out) == 2
    _one_line_error(capsys, f"--out {out} was not written (No space left on device; it is left as it was)")
    assert _snapshot(out.parent) == before
