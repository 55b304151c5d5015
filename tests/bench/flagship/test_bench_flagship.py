"""bench.flagship: unet-lr as shipped reaches its goal (issue 19's guard, slow); the quick section end to end
(a real search and its random peer), and its report."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench.flagship import measure
from bench.flagship.section import FlagshipSection
from tests.bench.conftest import QuickRun

META = {"date": "2026-12-07 04:00:00 UTC", "cpu": "Test CPU", "cores": 2}
# Issue 19's guard on one seed (the goal, measure.GOAL_DICE, is the median over five): the best val Dice
# of unet-lr as shipped with seed 0, and the share of its compute budget the search must spend.
GUARD_DICE = 0.96
GUARD_COMPUTE_SHARE = 0.8


@pytest.mark.slow
def test_the_quickstart_study_as_shipped_reaches_its_dice_on_its_budget(tmp_path: Path) -> None:
    # python -m search.run --study unet-lr --seed 0 in an empty folder: the shipped file, its defaults.
    result = measure.run_search(measure.STUDY, 0, tmp_path)
    found = (
        f"{measure.STUDY} seed 0: best val Dice {result['best_dice']}, compute "
        f"{result['compute_full_trials']} of {result['budget_full_trials']} full trials, "
        f"{result['trials']} trials ({result['pruned']} pruned), {result['wall_s']} s"
    )
    assert result["best_dice"] is not None and result["best_dice"] >= GUARD_DICE, found
    assert result["compute_full_trials"] >= GUARD_COMPUTE_SHARE * result["budget_full_trials"], found


def test_the_peer_is_the_same_study_without_pruning(tmp_path: Path) -> None:
    raw = yaml.safe_load(measure.random_study_file("unet-lr", tmp_path).read_text())
    shipped = yaml.safe_load((Path(measure.REPO) / "studies" / "unet-lr.yaml").read_text())
    assert raw["pruning"]["cross_trial"] == {"rule": "none"}
    assert raw["pruning"]["plateau"]["warmup_epochs"] > raw["budget"]["max_epochs"]
    assert raw["sampler"]["name"] == "random"
    # Everything else is the shipped file's: the same space, data, budget and baselines.
    for key in ("name", "space", "fixed", "data", "budget", "baselines", "execution"):
        assert raw[key] == shipped[key], key


@pytest.mark.slow
@pytest.mark.db
def test_quick_section_runs_both_searches_and_reports_them(quick_run: QuickRun) -> None:
    # The flagship section of the session's quick run (tests/bench/conftest.py).
    assert quick_run.status == 0
    figures = quick_run.section("flagship")
    assert figures["study"] == measure.QUICK_STUDY and figures["seeds"] == list(measure.QUICK_SEEDS)
    for strategy in measure.STRATEGIES:
        (result,) = figures["runs"][strategy]
        # --compute 2: two full trials' worth of epochs, spent and never exceeded.
        assert result["budget_full_trials"] == 2.0 and 0 < result["compute_full_trials"] <= 2.0
        assert result["trials"] >= 1 and 0.0 < result["best_dice"] <= 1.0
        assert figures["summary"][strategy]["best_dice"]["median"] == result["best_dice"]
    assert figures["runs"]["random"][0]["pruned"] == 0  # no pruning: every trial ran its epochs
    ours = figures["summary"]["ours"]["best_dice"]["median"]
    random = figures["summary"]["random"]["best_dice"]["median"]
    assert figures["goal_median_met"] == (ours >= measure.GOAL_DICE)
    assert figures["goal_vs_random_met"] == (ours >= random)
    lines = [line for line in quick_run.said if line.startswith("[flagship]")]
    assert len(lines) == 2 and lines[0].startswith("[flagship] ours seed 0: best val Dice")
    text = FlagshipSection().markdown(figures, META)
    assert text.startswith("## Flagship: the Quickstart's study as shipped (2026-12-07 04:00:00 UTC")
    assert f"| 0 | random, no pruning | {figures['runs']['random'][0]['best_dice']} | " in text
    assert f"Median best val Dice as shipped: **{ours}**" in text


@pytest.mark.parametrize(("values", "expected"), [([0.9], (0.9, 0.9, 0.9)), ([1, 2, 3, 4, 5], (2, 3, 4))])
def test_quartiles(values: list[float], expected: tuple[float, float, float]) -> None:
    q = measure.quartiles(values)
    assert (q["q1"], q["median"], q["q3"]) == expected
