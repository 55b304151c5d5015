"""The stronger peers of the replay tier (Optuna's HyperbandPruner, SMAC's BOHB-class facade), the real-image
task (``FolderTask``: sampling, snapping, preprocessing) and ``python -m bench --data DIR``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.__main__ import main
from bench.efficiency.folder_task import FolderTask
from bench.efficiency.measure import folder_task, native_task
from bench.efficiency.replay import STRATEGIES, replay
from bench.efficiency.table import Row, Table, build_rows
from bench.efficiency.task import HardTask
from search.spec.schema import StudySpec
from tests.bench.conftest import QuickRun
from unet.errors import DataError

TINY = HardTask(
    n_train=10, n_val=4, size=16, epochs=3, learning_rates=(1e-3, 1e-1), losses=("dice",), norms=("batch",)
)


def _row(lr: float, dice: list[float]) -> Row:
    return Row(
        params={"learning_rate": lr, "loss": "dice", "model.norm": "batch"},
        val_loss=tuple(1.0 - d / 2 for d in dice),
        val_dice=tuple(dice),
        train_images=tuple(TINY.n_train for _ in dice),
        stop_reason=None,
        seconds=0.0,
    )


def test_the_issue_peers_are_strategies() -> None:
    assert {"tpe_hyperband", "random_hyperband", "smac_bohb"} <= set(STRATEGIES)


@pytest.mark.parametrize("strategy", ["tpe_hyperband", "random_hyperband"])
def test_optuna_hyperband_prunes_the_weaker_curve(strategy: str) -> None:
    spec = StudySpec.from_dict(TINY.study_dict("bench-test"))
    rows = Table(TINY, "hand-made", (_row(1e-3, [0.1, 0.2, 0.3]), _row(1e-1, [0.5, 0.9, 1.0])), 0.0, True)
    run = replay(rows, strategy, 0, spec=spec, budget=40 * TINY.epochs * TINY.n_train)
    assert run.complete > 0  # the first trials complete (Hyperband needs finished trials to compare)
    assert run.pruned_by_rule > 0  # then the stock pruner stops trials early
    assert run.best_dice == 1.0 and run.compute_to_target is not None


def test_smac_runs_through_ask_tell_with_epochs_as_budget() -> None:
    spec = StudySpec.from_dict(TINY.study_dict("bench-test"))
    rows = Table(TINY, "hand-made", (_row(1e-3, [0.1, 0.2, 0.3]), _row(1e-1, [0.5, 0.9, 1.0])), 0.0, True)
    budget = 12 * TINY.epochs * TINY.n_train
    run = replay(rows, "smac_bohb", 0, spec=spec, budget=budget)
    # Hyperband's low rungs train fewer epochs than the row has: those count as stopped by its rule.
    assert run.pruned_by_rule > 0
    assert run.trials > 12  # more trials than full-length ones fit in the budget
    assert 0 < run.pruned_compute < budget
    assert run.complete >= 1  # Hyperband's top rung trains the full length


def test_folder_task_samples_snaps_and_preprocesses(small_folder: Path) -> None:
    task = FolderTask(str(small_folder), short_side=24, size=16, n_configs=20)
    grid = task.grid()
    assert (
        len(grid) == 20 and grid == FolderTask(str(small_folder), short_side=24, size=16, n_configs=20).grid()
    )
    for index, params in enumerate(grid):  # a trained configuration snaps to itself
        assert task.snap(params) == index and task.snap_distance(params) == 0.0
    # One decade of learning rate over a 3-decade range costs 1/3; one nominal mismatch costs 1.
    moved = {**grid[0], "learning_rate": grid[0]["learning_rate"] * 10}
    assert task.distances(moved)[0] == pytest.approx(1 / 3)
    other_loss = next(loss for loss in task.losses if loss != grid[0]["loss"])
    assert task.distances({**grid[0], "loss": other_loss})[0] == pytest.approx(1.0)
    train, val = task.datasets()
    assert (len(train), len(val)) == (task.n_train, task.n_val) == (6, 2)
    image, mask = train[0]
    assert image.shape == (1, 16, 16) and mask.shape == (16, 16)
    assert abs(float(image.mean())) < 1e-4  # z-scored per image
    assert set(np.unique(mask.numpy())) <= {0, 1}
    # The cache key follows the files' contents, not where the folder lives.
    assert task.to_dict()["folder"] == small_folder.name


def test_folder_task_reads_the_folder_as_the_service_does(small_folder: Path, tmp_path: Path) -> None:
    task = FolderTask(str(small_folder), short_side=24, size=16)
    # The service's split of the same folder (val_fraction 0.25, seed 0), through unet.folder_source.
    plan = task.source.plan(task.source.fingerprint(depth=4), depth=4)
    train, val = task.source.datasets(plan)
    assert (task.n_train, task.n_val) == (len(train), len(val))
    # A mask of another size than its image: before, the task cropped both and trained on misaligned
    # pairs; now the dataset doctor refuses the folder with its fix, as unet.train and the service do.
    broken = tmp_path / "broken"
    shutil.copytree(small_folder, broken)
    mask = next((broken / "masks").glob("*.png"))
    cv2.imwrite(str(mask), cv2.resize(cv2.imread(str(mask)), (7, 5), interpolation=cv2.INTER_NEAREST))
    with pytest.raises(DataError, match=rf"{mask.name}.*python -m unet.doctor"):
        FolderTask(str(broken), short_side=24, size=16).datasets()


def test_build_resumes_from_the_rows_an_interrupted_build_saved(tmp_path: Path) -> None:
    grid = TINY.grid()
    partial = tmp_path / "table.partial.jsonl"
    rows = [_row(p["learning_rate"], [0.1, 0.2, 0.3]) for p in grid]
    lines = [json.dumps({"index": i, "row": r.to_dict()}) for i, r in enumerate(rows)]
    partial.write_text("\n".join([*lines, '{"index": 0, "ro']) + "\n")  # a cut last line is skipped
    # Every row is there, so nothing is trained (a training would give other curves).
    assert build_rows(TINY, workers=1, partial=partial) == tuple(rows)


@pytest.mark.slow
@pytest.mark.db
def test_bench_data_option_builds_and_replays_a_folder_table(quick_run: QuickRun) -> None:
    # The session's quick run (tests/bench/conftest.py) was given --data on the eight images.
    assert quick_run.status == 0
    efficiency = quick_run.section("efficiency")
    tasks = efficiency["tasks"]
    native = f"{quick_run.data.name}-native"
    assert set(tasks) == {"synthetic", quick_run.data.name, native}
    real = tasks[quick_run.data.name]
    assert real["table"]["rows"] == folder_task(quick_run.data, quick=True).n_configs
    assert tasks[native]["table"]["rows"] == native_task(quick_run.data, quick=True).n_configs
    for task in tasks.values():
        assert set(task["replay"]) == set(STRATEGIES)
        for figures in task["replay"].values():
            assert figures["seeds"] == 3
            assert 0.0 <= figures["pruned_compute_share"] <= 1.0
        assert (quick_run.out / "cache" / f"table-{task['table']['key']}.json").is_file()
    assert set(efficiency["live"]["strategies"]) == {"random", "ours"}
    report = quick_run.report.read_text()
    assert f"### Task `{quick_run.data.name}`" in report and f"### Task `{native}`" in report


def test_bench_data_option_rejects_a_folder_without_images(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["--quick", "--only", "efficiency", "--out", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "has no images/ and masks/" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize("strategy", ["tpe_hyperband", "random_hyperband"])
def test_optuna_hyperband_replays_the_same_with_the_same_seed(strategy: str) -> None:
    """HyperbandPruner puts a trial in a bracket by a hash of the study's name and the trial's number: an
    unnamed study gets a random name, so the same seed gave other brackets, and other figures, per run."""
    spec = StudySpec.from_dict(TINY.study_dict("bench-test"))
    rows = Table(TINY, "hand-made", (_row(1e-3, [0.1, 0.2, 0.3]), _row(1e-1, [0.5, 0.9, 1.0])), 0.0, True)
    runs = [replay(rows, strategy, 0, spec=spec, budget=40 * TINY.epochs * TINY.n_train) for _ in range(4)]
    assert all(run.to_dict() == runs[0].to_dict() for run in runs[1:])
