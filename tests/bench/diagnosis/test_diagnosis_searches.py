"""bench.diagnosis.searches: the rule that checks a real search's labels against the trials' curves."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from bench.diagnosis import searches
from bench.diagnosis.searches import check_study, check_trial

INF = math.inf


def rows(*val: float, train: float = 0.5, untrained: float = 1.0) -> list[dict[str, float]]:
    return [{"val_loss": v, "train_loss": train, "initial_val_loss": untrained} for v in val]


@pytest.mark.parametrize(
    ("label", "history", "stop", "agrees", "why"),
    [
        ("too_early", rows(0.8), "underperforming", True, ""),
        ("healthy", rows(0.8, 0.6), None, False, "healthy after 2 epoch(s)"),
        ("healthy", rows(0.8, 0.6, 0.5), None, True, ""),
        ("too_early", rows(0.8, 0.6, 0.5), None, False, "too_early after 3 epochs"),
        # 100 x the study's median first-epoch val loss (1.0 here): must be diverged, whatever its length.
        ("too_early", rows(120.0), "underperforming", False, "too_early, but must be diverged"),
        ("diverged", rows(120.0), "underperforming", True, ""),
        ("behind_peers", rows(INF), None, False, "behind_peers, but must be diverged: a non-finite loss"),
        ("stalled", rows(0.9, 0.9, 0.9), "diverged", False, "stalled, but must be diverged: stopped as"),
        # 100 x the trial's own untrained val loss.
        ("unclear", rows(0.9, 60.0, 0.9, untrained=0.5), None, False, "unclear, but must be diverged"),
        ("diverged", rows(0.8), None, False, "diverged without evidence"),
        ("diverged", rows(12.0), None, True, ""),  # 10 x the median: evidence, not proof
        ("diverged", rows(0.8, 4.5), None, True, ""),  # 5 x its own first epoch
        ("healthy", rows(0.8, 4.5, 0.7), None, False, "healthy with a loss that exploded"),
        ("behind_peers", rows(0.8), None, True, ""),  # one epoch can show it: not checked further
        (None, rows(0.8), None, False, "not diagnosed"),
    ],
)
def test_check_trial(label: str | None, history: list, stop: str | None, agrees: bool, why: str) -> None:
    ok, reason = check_trial(label, history, stop_reason=stop, median_first=1.0)
    assert ok is agrees
    assert reason.startswith(why)


def test_check_study_takes_the_median_first_epoch_loss_of_its_trials() -> None:
    """Trial 2's first epoch is 200x the median (0.75) of the three: it must be diverged."""
    epochs = pd.DataFrame(
        [
            {"trial_number": n, "epoch": e + 1, "val_loss": v, "train_loss": 0.5, "initial_val_loss": 1.0}
            for n, losses in {0: [0.7, 0.6, 0.5], 1: [0.75], 2: [150.0]}.items()
            for e, v in enumerate(losses)
        ]
    )
    trials = [
        {"number": 0, "label": "healthy", "stop_reason": None},
        {"number": 1, "label": "too_early", "stop_reason": "underperforming"},
        {"number": 2, "label": "too_early", "stop_reason": "underperforming"},
        {"number": 3, "label": None, "stop_reason": "error"},  # no epoch: not checked
    ]
    checked = check_study(trials, epochs)
    assert [(t["number"], t["agrees"]) for t in checked] == [(0, True), (1, True), (2, False)]
    assert checked[2]["first_val_ratio"] == pytest.approx(200.0)
    scored = searches.score([{"study": "s", "seed": 0, "trials": checked}])
    assert (scored["agree"], scored["trials"], scored["exploded"], scored["exploded_diverged"]) == (
        2,
        3,
        1,
        0,
    )


@pytest.mark.slow
def test_a_real_smoke_search_is_checked(tmp_path: Path) -> None:
    result = searches.run_search("unet-smoke", 0, tmp_path / "smoke")
    assert "error" not in result, result
    # unet-smoke trains 3 trials of at most 2 epochs: none may be healthy.
    assert len(result["trials"]) == 3
    assert all(t["agrees"] for t in result["trials"]), result["trials"]
    assert all(t["label"] != "healthy" for t in result["trials"])
