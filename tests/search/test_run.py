"""python -m search.run end to end: runs, resumes, faults, bad input and exit codes."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from search.execution import objective
from search.run import main
from search.spec.schema import STUDIES_DIR

REPO = Path(__file__).resolve().parents[2]
DSB = REPO.parent / "shared" / "data" / "dsb2018-nuclei"


def study_file(tmp_path: Path, name: str, **changes) -> Path:
    """A copy of unet-smoke named ``name`` with top-level sections updated by ``changes``."""
    spec = yaml.safe_load((STUDIES_DIR / "unet-smoke.yaml").read_text())
    spec["name"] = name
    for section, values in changes.items():
        if isinstance(values, dict) and isinstance(spec.get(section), dict):
            spec[section] = {**spec[section], **values}
        else:
            spec[section] = values
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def run_cli(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "search.run", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        **kwargs,
    )


def test_smoke_study_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--study", "unet-smoke", "--backend", "local"]) == 0
    out = capsys.readouterr()
    url = f"sqlite:///{tmp_path / 'unet-search.db'}"
    assert f"created in {url}" in out.err  # the default store, in the working directory, is named
    done = trials(url, "unet-smoke")
    assert len(done) == 3 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in done)
    assert done[0].params == {"learning_rate": 0.01, "optimizer": "adam"}  # the baseline goes first
    for t in done:
        assert t.user_attrs["diagnosis"]
        # Every epoch is an intermediate value, the last included, and a row of the epoch table.
        with sqlite3.connect(tmp_path / "unet-search.db") as db:
            epochs = [
                e
                for (e,) in db.execute(
                    "SELECT epoch FROM unet_search_epochs WHERE trial_id = ? ORDER BY epoch", (t._trial_id,)
                )
            ]
        assert epochs == sorted(t.intermediate_values) and epochs
        # The evidence columns are filled (synthetic images are z-scored: input_std about 1).
        with sqlite3.connect(tmp_path / "unet-search.db") as db:
            std, train_dice, true_fg = db.execute(
                "SELECT input_std, train_dice, val_true_fg FROM unet_search_epochs WHERE trial_id = ? "
                "AND epoch = 1",
                (t._trial_id,),
            ).fetchone()
        assert abs(std - 1) < 0.01 and 0 <= train_dice <= 1 and 0 < true_fg < 1
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["stop_reason"] in ("plateau", "diverged", "underperforming")
            assert t.user_attrs["stop_epoch"] == max(epochs)
            assert t.user_attrs["stop_detail"]
    assert "Best trial #" in out.out and "python -m search.dashboard" in out.out

    # The same command again resumes: the study already has its 3 trials, so nothing new runs.
    assert main(["--study", "unet-smoke", "--backend", "local"]) == 0
    assert "resumed" in capsys.readouterr().err
    assert len(trials(url, "unet-smoke")) == 3
    # A larger --n-trials counts the finished ones.
    assert main(["--study", "unet-smoke", "--n-trials", "4", "--backend", "local"]) == 0
    assert len(trials(url, "unet-smoke")) == 4


def dsb_subset(folder: Path, count: int) -> Path:
    """The first ``count`` DSB images with their masks, copied into ``folder`` (real data, less of it)."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
        for image in sorted((DSB / sub).glob("*.png"))[:count]:
            shutil.copy(image, folder / sub / image.name)
    return folder


@pytest.mark.slow
def test_real_folder_data_end_to_end(tmp_path, monkeypatch):
    # Twelve of DSB's images, reached through a symlink (as ../shared may be one); all 59, validated
    # tiled after every epoch, took most of the time.
    data = dsb_subset(tmp_path / "dsb-few", 12)
    (tmp_path / "linked").symlink_to(data)
    path = study_file(
        tmp_path,
        "dsb-smoke",
        data={"source": "folder", "folder": {"path": str(tmp_path / "linked"), "patch_size": 64}},
        budget={"n_trials": 2, "max_epochs": 2},
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["--study", str(path), "--storage", url, "--backend", "local"]) == 0
    done = trials(url, "dsb-smoke")
    assert len(done) == 2
    attrs = optuna.load_study(study_name="dsb-smoke", storage=url).user_attrs
    assert attrs["spec"]["data"]["folder"]["path"] == str(data.resolve())  # the symlink resolved
    assert attrs["data_plan"]["patch_size"] == 64 and attrs["data_plan"]["source"] == "given"
    assert all(t.intermediate_values for t in done)


def test_out_of_memory_fails_the_trial_and_the_study_goes_on(tmp_path, monkeypatch):
    real_fit = objective.fit
    calls = []

    def fit(config, train, val, on_epoch=None, **kwargs):
        calls.append(config)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_fit(config, train, val, on_epoch, **kwargs)

    monkeypatch.setattr(objective, "fit", fit)
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["--study", "unet-smoke", "--storage", url, "--backend", "local"]) == 0
    done = trials(url, "unet-smoke")
    assert len(done) == 3
    oom = done[0]
    assert oom.state == TrialState.FAIL
    assert oom.user_attrs["stop_reason"] == "out_of_memory"
    assert oom.user_attrs["stop_detail"]["params"] == {"learning_rate": 0.01, "optimizer": "adam"}
    assert "2.00 GiB" in oom.user_attrs["stop_detail"]["error"]
    assert all(t.state != TrialState.FAIL for t in done[1:])


def wait_for(condition, *, timeout: float = 120.0, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def epochs_recorded(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT count(*) FROM unet_search_epochs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_resume_after_sigkill_leaves_no_running_trial(tmp_path):
    path = study_file(
        tmp_path,
        "killed",
        budget={"n_trials": 3, "max_epochs": 30},
        pruning={"plateau": {"warmup_epochs": 30, "patience": 1, "min_delta": 0.0, "divergence_factor": 5.0}},
    )
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    proc = run_cli("--study", str(path), "--storage", url, "--backend", "local", cwd=tmp_path)
    wait_for(lambda: epochs_recorded(db) >= 2, what="the first epochs")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [t.state for t in trials(url, "killed")] == [TrialState.RUNNING]

    # One counted trial asked for: it must run a new trial, as the lost one does not count (were it
    # counted, nothing would run; were it left RUNNING, it would hold the budget).
    assert main(["--study", str(path), "--storage", url, "--n-trials", "1", "--backend", "local"]) == 0
    done = trials(url, "killed")
    assert not [t for t in done if t.state == TrialState.RUNNING]
    lost = done[0]
    assert lost.state == TrialState.FAIL and lost.user_attrs["stop_reason"] == "worker_lost"
    assert lost.user_attrs["stop_epoch"] >= 2
    counted = [t for t in done if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 1 and len(done) == 2  # the exact count, the lost trial not among them
    assert len({t.number for t in done}) == len(done)


@pytest.mark.slow
def test_sigterm_marks_the_trial_interrupted_and_exits_130(tmp_path):
    path = study_file(
        tmp_path,
        "stopped",
        budget={"n_trials": 2, "max_epochs": 30},
        pruning={"plateau": {"warmup_epochs": 30, "patience": 1, "min_delta": 0.0, "divergence_factor": 5.0}},
    )
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    proc = run_cli("--study", str(path), "--storage", url, "--backend", "local", cwd=tmp_path)
    wait_for(lambda: epochs_recorded(db) >= 1, what="the first epoch")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Study stopped" in out  # the summary is printed
    done = trials(url, "stopped")
    first = done[0]
    assert first.state == TrialState.FAIL and first.user_attrs["stop_reason"] == "interrupted"
    waiting = [t for t in done if t.state == TrialState.WAITING]
    assert (
        len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == first.params
    )  # run again on resume


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--study", "unet-lrr"], "unet-lr"),
        (["--study", "unet-smoke", "--storage", "nosuchdb://x"], "storage URL"),
        (
            ["--study", "unet-smoke", "--storage", "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test"],
            "***",
        ),
        (["--study", "unet-smoke", "--data", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--study", "unet-smoke", "--n-trials", "0"], "--n-trials must be >= 1"),
        ([], "--study"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "s3cret" not in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "unet-search.db").exists()  # nothing half-written


def test_broken_dataset_stops_before_any_trial(tmp_path, capsys):
    data = tmp_path / "broken"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    (data / "images" / "a.png").write_bytes(b"not a png at all")
    cv2.imwrite(str(data / "masks" / "a.png"), np.zeros((8, 8), np.uint8))
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["--study", "unet-smoke", "--data", str(data), "--storage", url]) == 2
    assert "a.png" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()


def test_changed_study_file_conflicts_with_the_stored_study(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    path = study_file(tmp_path, "changing", budget={"n_trials": 1})
    assert main(["--study", str(path), "--storage", url, "--backend", "local"]) == 0
    path = study_file(
        tmp_path,
        "changing",
        budget={"n_trials": 1},
        space={
            "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
        },
    )
    assert main(["--study", str(path), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "space changed" in err and "new name" in err


def test_list_and_dry_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    for name in ("unet-lr", "unet-arch", "unet-full", "unet-smoke"):
        assert name in listed
    assert main(["--study", "unet-lr", "--dry-run", "--data", str(DSB)]) == 0
    out = capsys.readouterr().out
    assert "learning_rate" in out and "0/255" in out
    assert "Data plan: patch 256x256 (planned)" in out and "depths 3 fit" in out
    assert main(["--study", "unet-lr", "--dry-run", "--data", str(DSB), "--patch-size", "96"]) == 0
    assert "Data plan: patch 96x96 (given)" in capsys.readouterr().out
    assert main(["--study", "unet-lr", "--dry-run", "--patch-size", "96"]) == 2
    assert "--patch-size 96 applies to folder data" in capsys.readouterr().err
    assert not (tmp_path / "unet-search.db").exists()


def test_the_same_study_file_runs_on_other_data_under_another_name(tmp_path, capsys):
    # Found as: --data on a store that holds the synthetic study of the same name was refused, and the
    # only way out was copying the study file.
    url = f"sqlite:///{tmp_path / 's.db'}"
    base = ["--study", "unet-smoke", "--storage", url, "--backend", "local", "--n-trials", "1"]
    assert main(base) == 0
    capsys.readouterr()
    # Eight of DSB's images in small patches: the name is tested, not the fit (all 59 took a minute).
    few = dsb_subset(tmp_path / "dsb-few", 8)
    folder = ["--data", str(few), "--patch-size", "64"]
    assert main([*base, *folder]) == 2
    assert "(--name NAME)" in capsys.readouterr().err
    assert main([*base, *folder, "--name", "smoke-on-dsb"]) == 0
    study = optuna.load_study(study_name="smoke-on-dsb", storage=url)
    assert study.user_attrs["spec"]["name"] == "smoke-on-dsb"
    assert study.user_attrs["spec"]["data"]["folder"]["path"] == str(few)
    assert len(trials(url, "unet-smoke")) == 1  # the synthetic study is untouched
    assert main([*base, "--name", "bad name"]) == 2
    assert "name must start with a letter or digit" in capsys.readouterr().err


def test_every_study_names_its_objective(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["--study", "unet-smoke", "--storage", url, "--backend", "local", "--n-trials", "1"]) == 0
    study = optuna.load_study(study_name="unet-smoke", storage=url)
    assert study.metric_names == ["val_dice"]
    assert "value" not in study.trials_dataframe().columns
    assert "value_val_dice" in study.trials_dataframe().columns


@pytest.mark.parametrize("name", ["..", "."])
def test_a_name_that_is_a_path_is_refused_before_any_trial(tmp_path, capsys, name):
    # Issue 22 case 10: '--name ..' ran, then crashed after the first complete trial (left RUNNING).
    url = f"sqlite:///{tmp_path / 's.db'}"
    args = ["--study", "unet-smoke", "--storage", url, "--backend", "local", "--n-trials", "1"]
    assert main([*args, "--name", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: name must start with a letter or digit") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_dry_run_states_the_constant_prediction_dice_on_mostly_foreground(tmp_path, monkeypatch, capsys):
    """Issue 20: masks ~80 % foreground, where predicting foreground everywhere scores Dice ~0.89."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for i in range(10):
        mask = np.zeros((40, 40), np.uint8)
        mask[:, : 32 + i % 3] = 255  # 80-85 % of the pixels
        for sub, array in (("images", rng.integers(0, 255, (40, 40), dtype=np.uint8)), ("masks", mask)):
            (tmp_path / "membranes" / sub).mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(tmp_path / "membranes" / sub / f"{i}.png"), array)
    assert main(["--study", "unet-lr", "--dry-run", "--data", str(tmp_path / "membranes")]) == 0
    out = capsys.readouterr().out
    assert "constant Dice: all foreground 0.8" in out or "constant Dice: all foreground 0.9" in out
    assert "[high-constant-dice] predicting foreground everywhere scores val Dice" in out
    assert not (tmp_path / "unet-search.db").exists()
