"""What a conclusive live tier would take, from a run's replay and live figures (hand-computed)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.efficiency.power import describe_needs, live_needs

UNIT = 768  # images per full trial


def efficiency(vs_random: dict[str, Any], random_ctt: list[float | None]) -> dict[str, Any]:
    runs = [{"strategy": "random", "compute_to_target": None if c is None else c * UNIT} for c in random_ctt]
    return {
        "tasks": {
            "synthetic": {
                "unit_images": UNIT,
                "replay": {"ours": {"seeds": 100, "speedup": {"random": vs_random}}},
                "replay_runs": [*runs, {"strategy": "ours", "compute_to_target": UNIT}],
            }
        },
        "live": {"seconds": 96.0, "runs": [{"budget": 12 * UNIT}] * 4},
    }


def test_seeds_budget_and_time_follow_the_replay_interval() -> None:
    # Half-width (ln 2.5 - ln 1.5) / 2 = 0.2554; (0.2554 / ln 2) ** 2 * 100 = 13.6 -> 14 seeds. Random's
    # 90th percentile of 1..10 full trials: the 9th value. 96 s / (4 searches x 12 trials) = 2 s a trial.
    needs = live_needs(efficiency({"median": 2.0, "low": 1.5, "high": 2.5}, [float(c) for c in range(1, 11)]))
    assert needs is not None
    assert (needs["seeds"], needs["budget_trials"], needs["seconds_per_trial"]) == (14, 9.0, 2.0)
    assert needs["seconds"] == pytest.approx(2 * 14 * 9 * 2.0)
    assert "about 14 seeds per strategy" in describe_needs(needs)


@pytest.mark.parametrize(
    "vs_random", [{"median": 0.9, "low": 0.7, "high": 1.2}, {"median": 2.0, "low": 0.0, "high": "inf"}]
)
def test_no_seed_count_when_the_replay_does_not_put_ours_ahead(vs_random: dict[str, Any]) -> None:
    needs = live_needs(efficiency(vs_random, [1.0, 2.0]))
    assert needs is not None and needs["seeds"] is None
    assert "more seeds would not help" in describe_needs(needs)


def test_budget_beyond_the_replay_when_random_often_misses() -> None:
    needs = live_needs(efficiency({"median": 2.0, "low": 1.5, "high": 2.5}, [1.0, None, None, None]))
    assert needs is not None and needs["seconds"] is None
    assert "more than the replay's budget" in describe_needs(needs)
