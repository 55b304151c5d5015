"""Every command's ``--storage``: the URL is parsed once, and a bad one is one line and exit 2."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

COMMANDS = [
    ("search.run", ["--study", "unet-smoke"]),
    ("search.report.cli", ["--study", "unet-smoke"]),
    ("search.export", ["--study", "unet-smoke", "--out", "exported"]),
    ("search.retrain", ["--study", "unet-smoke", "--out", "retrained"]),
    ("search.dashboard", ["--study", "unet-smoke"]),
    ("search.k8s.cli", ["wait-store"]),
]


@pytest.mark.parametrize(("module", "args"), COMMANDS, ids=[m for m, _ in COMMANDS])
@pytest.mark.parametrize("url", ["notaurl", "nosuchdb://x"])
def test_bad_storage_url_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, module, args, url):
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(module).main
    assert main([*args, "--storage", url]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: storage URL") and url in err and "sqlite:///" in err  # the fix, by example
    assert list(Path(tmp_path).iterdir()) == []  # nothing half-written
