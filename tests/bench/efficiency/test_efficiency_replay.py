"""The search-efficiency section: replay accounting on hand-made tables, the statistics, the table cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest

from bench.efficiency import replay as replay_module
from bench.efficiency.analysis import describe_task, row_class, spearman, speedup
from bench.efficiency.replay import STRATEGIES, Setup, replay
from bench.efficiency.table import Row, Table, load_or_build, sources_digest, table_key
from bench.efficiency.task import QUICK_TASK, HardTask
from search.spec.schema import StudySpec

# Two configurations (learning rates 1e-3 and 1e-1), 3 epochs of 10 images each.
TINY = HardTask(
    n_train=10, n_val=4, size=16, epochs=3, learning_rates=(1e-3, 1e-1), losses=("dice",), norms=("batch",)
)
UNIT = TINY.epochs * TINY.n_train


def row(lr: float, dice: list[float], *, loss: list[float] | None = None, stop: str | None = None) -> Row:
    return Row(
        params={"learning_rate": lr, "loss": "dice", "model.norm": "batch"},
        val_loss=tuple(loss or [1.0 - d / 2 for d in dice]),
        val_dice=tuple(dice),
        train_images=tuple(TINY.n_train for _ in dice),
        stop_reason=stop,
        seconds=0.0,
    )


def table(*rows: Row) -> Table:
    return Table(TINY, "hand-made", rows, 0.0, cached=True)


@pytest.fixture(scope="module")
def spec() -> StudySpec:
    return StudySpec.from_dict(TINY.study_dict("bench-test"))


def test_snap_maps_every_proposal_to_its_grid_row() -> None:
    grid = QUICK_TASK.grid()
    for index, params in enumerate(grid):
        assert QUICK_TASK.snap(params) == index
    # Nearest in log space: 5e-3 is 0.7 decades above 1e-3 and 1.3 below 1e-1.
    assert QUICK_TASK.snap({"learning_rate": 5e-3, "loss": "bce", "model.norm": "batch"}) == 1
    assert QUICK_TASK.snap({"learning_rate": 2e-2, "loss": "bce", "model.norm": "batch"}) == 3


def test_compute_to_target_on_the_virtual_clock(spec: StudySpec) -> None:
    # Both rows alike, so whatever the sampler draws: target 0.95 x 1.0 is first reached by worker 0's
    # epoch 2, which ends at clock 20 images; both workers have worked until then: 2 x 20 = 40 images.
    same = [0.5, 0.96, 1.0]
    run = replay(table(row(1e-3, same), row(1e-1, same)), "random", 0, spec=spec, budget=3 * UNIT)
    assert run.compute_to_target == 40
    # Budget 90 images = clock 45: each worker completes trials at clock 30 (3 epochs) and starts another.
    assert (run.trials, run.complete, run.pruned) == (4, 2, 0)
    assert run.best_dice == run.best_complete == 1.0


def test_target_never_reached_is_none(spec: StudySpec) -> None:
    # Target 0.95 x 1.0: the second row reaches it only at epoch 3, which the budget never lets finish.
    rows = table(row(1e-3, [0.1, 0.2, 0.3]), row(1e-1, [0.1, 0.2, 1.0]))
    run = replay(rows, "random", 0, spec=spec, budget=UNIT)  # clock 15: one epoch per worker
    assert run.compute_to_target is None
    assert run.best_dice == 0.1 and run.best_complete == 0.0


def test_fit_divergence_ends_the_trial_as_pruned_in_every_strategy(spec: StudySpec) -> None:
    diverged = row(1e-3, [0.2], loss=[float("nan")], stop="diverged")
    rows = table(diverged, row(1e-1, [0.2], loss=[float("nan")], stop="diverged"))
    run = replay(rows, "random", 0, spec=spec, budget=4 * TINY.n_train)  # clock 20: 2 epochs per worker
    assert (run.trials, run.pruned, run.pruned_by_rule, run.complete) == (6, 4, 0, 0)
    assert run.pruned_compute == 4 * TINY.n_train


def _prune_at_epoch(stop_epoch: int):
    def build(spec: StudySpec, seed: int) -> Setup:
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))

        def judge_for(trial: optuna.Trial, start: int):
            def judge(epoch: int, val_loss: float, dice: float) -> str | None:
                trial.report(dice, epoch)
                return "underperforming" if epoch == stop_epoch else None

            return judge

        return Setup(study, spec, judge_for)

    return build


@pytest.mark.parametrize(
    ("stop_epoch", "false_kills"),
    [
        (1, 4),  # stopped at Dice 0.5, below the top-10 % line (1.0): every kill lost a top result
        (3, 0),  # stopped at epoch 3, after reaching 1.0: a top row, but nothing was lost
    ],
)
def test_false_kills_count_only_stops_below_the_top(
    spec: StudySpec, monkeypatch: pytest.MonkeyPatch, stop_epoch: int, false_kills: int
) -> None:
    monkeypatch.setitem(STRATEGIES, "stopper", ("test", _prune_at_epoch(stop_epoch)))
    top = [0.5, 0.9, 1.0]
    # Budget: two stopped trials on each of the two workers.
    budget = 2 * 2 * stop_epoch * TINY.n_train
    run = replay(table(row(1e-3, top), row(1e-1, top)), "stopper", 0, spec=spec, budget=budget)
    assert (run.pruned_by_rule, run.killed, run.continued, run.top_killed) == (4, 4, 0, 4)
    assert run.false_kills == false_kills
    assert run.pruned_compute == 4 * stop_epoch * TINY.n_train


def test_ours_replays_with_the_service_stopper() -> None:
    # With plateau warm-up 0 and patience 1, the service's rule calls a flat loss a plateau at epoch 2.
    data = TINY.study_dict("bench-test") | {
        "pruning": {"plateau": {"warmup_epochs": 0, "patience": 1}, "cross_trial": {"rule": "none"}}
    }
    flat = row(1e-3, [0.3] * 3, loss=[0.5] * 3)
    # Budget 180 images = clock 90: each worker stops a trial at clock 20, 40, 60 and 80.
    run = replay(table(flat, flat), "ours", 0, spec=StudySpec.from_dict(data), budget=6 * UNIT)
    assert (run.pruned_by_rule, run.complete, run.trials) == (8, 0, 10)
    assert run.pruned_compute == 8 * 2 * TINY.n_train
    assert (run.top_killed, run.false_kills) == (8, 0)  # stopped at their best: nothing lost


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        ([1, 2, 3], [10, 20, 30], 1.0),
        ([1, 2, 3], [3, 2, 1], -1.0),
        # Ranks (0.5, 0.5, 2) against (0, 1, 2): covariance 1.5 / sqrt(1.5 x 2) = 0.866.
        ([1, 1, 2], [1, 2, 3], 1.5 / math.sqrt(3.0)),
    ],
)
def test_spearman(x: list[float], y: list[float], expected: float) -> None:
    assert spearman(x, y) == pytest.approx(expected)


def test_speedup_is_the_ratio_of_medians_with_an_interval() -> None:
    assert speedup([4.0, 4.0, 4.0], [2.0, 2.0, 2.0]) == {"median": 2.0, "low": 2.0, "high": 2.0}
    same = speedup([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert same["median"] == 1.0 and same["low"] <= 1.0 <= same["high"]
    # A reference that never reached the target (inf) makes the strategy infinitely faster, not NaN.
    assert speedup([math.inf] * 3, [2.0] * 3)["median"] == "inf"


@pytest.mark.parametrize(
    ("r", "expected"),
    [
        (row(1e-1, [0.1], loss=[float("nan")], stop="diverged"), "diverged"),
        (row(1e-1, [0.3, 0.3, 0.3], loss=[0.5, 0.6, 2.6]), "diverged"),  # 2.6 > 5 x 0.5
        (row(1e-1, [0.3, 0.1, 0.01], loss=[0.5, 0.5, 0.5]), "background"),
        (row(1e-3, [0.1, 0.2, 0.3], loss=[0.9, 0.8, 0.7]), "stalled"),  # 0.3 < 0.5 x 0.8
        (row(1e-3, [0.5, 0.6, 0.8], loss=[0.9, 0.8, 0.7]), "healthy"),
    ],
)
def test_row_classes(r: Row, expected: str) -> None:
    assert row_class(r, table_best=0.8) == expected


def test_describe_task_on_a_hand_made_table() -> None:
    task = HardTask(epochs=6, learning_rates=(1e-4, 1e-3, 1e-2, 1e-1), losses=("dice",), norms=("batch",))
    rows = [
        row(1e-4, [0.5] * 6),
        row(1e-3, [0.0, 0.0, 0.0, 0.9, 0.9, 0.9]),  # last at epoch 3, first at the end
        row(1e-2, [0.4] * 6),
        row(1e-1, [0.3] * 6),
    ]
    figures = describe_task(Table(task, "hand-made", tuple(rows), 0.0, cached=True))
    assert (figures["best_dice"], figures["share_reaching_target"]) == (0.9, 0.25)
    # Stalled: best Dice below half the table's best (0.45).
    assert figures["classes"] == {"diverged": 0.0, "background": 0.0, "stalled": 0.5, "healthy": 0.5}
    assert figures["late_bloomers"] == 0.25
    # Ranks at epoch 1 (3, 0, 2, 1) against the final ones (2, 3, 1, 0): covariance -1 / variance 5.
    assert figures["spearman_early_final"]["1"] == pytest.approx(-0.2)


def test_table_cache_is_keyed_by_the_task_and_records_the_sources(tmp_path: Path) -> None:
    assert table_key(TINY) != table_key(HardTask(**{**TINY.to_dict(), "noise": 0.3}))
    key = table_key(TINY)
    cached = {
        "key": key,
        "unet_sources": "0123456789abcdef",
        "build_seconds": 1.5,
        "rows": [row(1e-3, [0.1]).to_dict(), row(1e-1, [0.2]).to_dict()],
    }
    (tmp_path / f"table-{key}.json").write_text(json.dumps(cached))
    loaded = load_or_build(TINY, tmp_path)  # would train for real on a cache miss
    assert loaded.cached and loaded.key == key
    assert loaded.sources == "0123456789abcdef" != sources_digest()  # the report flags the stale curves
    assert [r.best_dice for r in loaded.rows] == [0.1, 0.2]


def test_replay_module_names_every_strategy_of_the_issue() -> None:
    assert {"random", "tpe", "tpe_median", "asha", "tpe_hyperband", "smac_bohb", "ours"} <= set(
        replay_module.STRATEGIES
    )
