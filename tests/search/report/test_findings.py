"""search.report.findings: which groups of trials become findings, in which words, with which thresholds."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from search.report.findings import find_findings, outcome_labels, rung_findings
from search.report.groups import round_between

NAN = math.nan
LR = {"learning_rate": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}}
NORM = {"model.norm": {"type": "categorical", "choices": ["batch", "instance", "none"]}}
DEPTH = {"model.depth": {"type": "int", "low": 2, "high": 5}}

HEALTHY = ("COMPLETE", None, "healthy")
DIVERGED = ("PRUNED", "diverged", "diverged")
STALLED = ("PRUNED", "plateau", "stalled")
LOST = ("FAIL", "worker_lost", None)
OOM = ("FAIL", "out_of_memory", None)
UNDER = ("PRUNED", "underperforming", "healthy")
H, D, S, L = HEALTHY, DIVERGED, STALLED, LOST  # short names for the table below


def trials(param: str, rows: list[tuple[object, tuple[str, str | None, str | None]]]) -> pd.DataFrame:
    """A trials table with one parameter: ``(value, (state, stop_reason, diagnosis))`` per trial."""
    return pd.DataFrame(
        [{"state": s, "stop_reason": r, "diagnosis": d, param: v} for v, (s, r, d) in rows],
        columns=["state", "stop_reason", "diagnosis", param],
    )


@pytest.mark.parametrize(
    ("space", "rows", "expected"),
    [
        pytest.param(
            LR,
            [(0.001, H), (0.002, H), (0.003, H), (0.1, D), (0.2, D), (0.3, D)],
            ["all 3 trials with learning rate > 0.02 diverged"],
            id="above-a-round-threshold-in-log-space",
        ),
        pytest.param(
            LR,
            [(1e-4, S), (2e-4, S), (3e-4, S), (4e-4, H), (0.01, H), (0.02, H)],
            ["all 3 trials with learning rate < 0.00035 stalled and were stopped on a plateau"],
            id="below-a-threshold-labels-merged",
        ),
        pytest.param(
            LR,
            [(0.001, H), (0.002, H), (0.003, H), (0.1, D), (0.2, H), (0.3, D)],
            [],
            id="two-of-three-is-not-enough",
        ),
        pytest.param(
            LR,
            [(v, S) for v in (0.001, 0.002, 0.003, 0.1, 0.2, 0.3)],
            [],
            id="a-label-everywhere-explains-nothing",
        ),
        pytest.param(
            LR,
            [(0.001, H), (0.002, H), (0.003, H), (0.004, H), (0.2, D), (0.3, D)],
            [],
            id="two-trials-are-no-group",
        ),
        pytest.param(
            NORM,
            [("none", S)] * 4 + [("none", H)] + [("batch", H)] * 3 + [("instance", H)] * 2,
            ["4 of 5 trials with normalisation none stalled and were stopped on a plateau"],
            id="categorical-value",
        ),
        pytest.param(
            LR,
            [(0.001, H), (0.002, H), (0.003, H), (0.1, D), (0.2, D), (0.3, D),
             (0.4, L), (0.5, L)],
            ["all 3 trials with learning rate > 0.02 diverged"],
            id="lost-workers-say-nothing-about-parameters",
        ),
        pytest.param(
            LR,
            [(0.001, H), (0.002, H), (0.003, H), (0.1, D), (0.2, D),
             (0.3, ("RUNNING", None, None)), (0.4, ("RUNNING", None, None))],
            [],
            id="running-trials-are-not-counted",
        ),
        pytest.param(
            DEPTH,
            [(2, H)] * 3 + [(3, H)] * 3 + [(5, OOM)] * 3,
            ["all 3 trials with depth 5 ran out of memory"],
            id="few-integers-are-grouped-by-value",
        ),
        pytest.param(LR, [(v, H) for v in (0.001, 0.01, 0.1, 0.2, 0.3)], [], id="healthy-is-no-finding"),
        pytest.param(NORM, [("batch", S)] * 4, [], id="one-value-for-every-trial-explains-nothing"),
        pytest.param(
            LR,
            [(1e-4, S), (2e-4, UNDER), (3e-4, UNDER), (0.01, H), (0.02, H), (0.03, H), (0.04, UNDER)],
            ["all 3 trials with learning rate < 0.002 were stopped early"],
            id="several-reasons-together",
        ),
    ],
)  # fmt: skip
def test_findings(space: dict, rows: list, expected: list[str]) -> None:
    (param,) = space
    assert [f.text for f in find_findings(trials(param, rows), space)] == expected


def test_findings_are_sorted_by_matched_trials() -> None:
    rows = [
        (0.001, ("COMPLETE", None, "overfitting")),
        (0.002, ("COMPLETE", None, "overfitting")),
        (0.003, ("COMPLETE", None, "overfitting")),
        (0.01, HEALTHY),
        (0.02, HEALTHY),
        *((v, DIVERGED) for v in (0.1, 0.2, 0.3, 0.4)),
    ]
    found = find_findings(trials("learning_rate", rows), LR)
    assert [(f.labels, f.matched, f.size) for f in found] == [(("diverged",), 4, 4), (("overfitting",), 3, 3)]
    assert found[0].text == "all 4 trials with learning rate > 0.04 diverged"  # sqrt(0.02 x 0.1) = 0.045
    assert found[0].outside_share == 0.0


def test_parameter_without_definition_is_judged_by_its_values() -> None:
    rows = [("a", HEALTHY)] * 3 + [("b", DIVERGED)] * 3
    assert [f.text for f in find_findings(trials("optimizer", rows), {"optimizer": {}})] == [
        "all 3 trials with optimizer b diverged"
    ]


@pytest.mark.parametrize(
    ("low", "high", "log", "expected"),
    [
        (0.04, 0.06, True, 0.05),  # geometric middle 0.049 -> 0.05
        (0.003, 0.1, True, 0.02),  # geometric middle 0.0173 -> 0.02
        (0.003, 0.1, False, 0.05),  # arithmetic middle 0.0515 -> 0.05
        (1, 2, False, 1.5),
        (3, 5, False, 4),
        (9, 10, False, 9.5),
        (0.1234, 0.1236, False, 0.1235),
        (0.002, 0.0025, True, 0.0022),
    ],
)
def test_round_between(low: float, high: float, log: bool, expected: float) -> None:
    cut = round_between(low, high, log=log)
    assert cut == pytest.approx(expected) and low < cut < high


@pytest.mark.parametrize(
    ("stop_reason", "diagnosis", "labels"),
    [
        (None, None, set()),
        (None, "healthy", set()),
        ("plateau", "stalled", {"plateau", "stalled"}),
        ("diverged", "diverged", {"diverged"}),
        ("worker_lost", None, set()),
        ("interrupted", "stalled", {"stalled"}),
        (math.nan, "overfitting", {"overfitting"}),
    ],
)
def test_outcome_labels(stop_reason: object, diagnosis: object, labels: set[str]) -> None:
    assert outcome_labels(stop_reason, diagnosis) == labels
    assert outcome_labels(stop_reason, diagnosis, state="PRUNED") == labels | {"pruned"}


def test_pruned_trials_that_diverged_in_epoch_1_give_the_range_to_leave_out() -> None:
    """Issue 20: the unet-lr run under successive halving, where every trial but one stopped at the
    first rung; the three that exploded there are the finding, with the change to the space."""
    early = ("PRUNED", "underperforming", "too_early")
    rows = [(10 ** (-4 + 0.2 * i), early) for i in range(12)]
    rows += [(0.03, ("PRUNED", "underperforming", "diverged")), (0.3, DIVERGED), (0.7, DIVERGED)]
    rows += [(0.002, ("COMPLETE", None, "healthy"))]
    frame = trials("learning_rate", rows)
    frame["epochs_run"] = [1] * 15 + [12]
    found = [f.sentence for f in find_findings(frame, LR)]
    assert found == [
        "all 3 trials with learning rate > 0.02 diverged in epoch 1: narrow learning_rate to <= 0.02",
        # Successive halving's usual end is no failure to leave out of the space.
        "13 of 14 trials with learning rate < 0.09 were pruned as underperforming in epoch 1",
    ]


def test_a_choice_that_failed_is_dropped_and_health_gets_no_action() -> None:
    rows = [("batch", HEALTHY)] * 3 + [("none", STALLED)] * 3
    frame = trials("model.norm", rows)
    frame["epochs_run"] = [10, 10, 10, 4, 5, 6]
    (found,) = find_findings(frame, NORM)
    assert found.sentence == (
        "all 3 trials with normalisation none stalled and were stopped on a plateau within 6 epochs: "
        "drop none from model.norm's choices"
    )


def _rung_study(dice_by_lr: dict[float, list[float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trials 0.. with one learning rate each and no outcome labels (all pruned as underperforming or
    complete and healthy), and their epoch rows: ``{lr: [val Dice at epoch 1, 2, ...]}``."""
    trial_rows, epoch_rows = [], []
    for number, (lr, dice) in enumerate(dice_by_lr.items()):
        state, reason = ("COMPLETE", None) if len(dice) > 1 else ("PRUNED", "underperforming")
        trial_rows.append(
            {
                "number": number,
                "state": state,
                "stop_reason": reason,
                "diagnosis": "too_early",
                "learning_rate": lr,
            }
        )
        epoch_rows += [{"trial_number": number, "epoch": e + 1, "val_dice": d} for e, d in enumerate(dice)]
    return pd.DataFrame(trial_rows), pd.DataFrame(epoch_rows)


def test_rung_findings_compare_val_dice_at_equal_epochs_without_labels() -> None:
    """12 trials, none with a failure label: at epoch 1 (8 of them ended there) the three with the lowest
    learning rates have the lowest val Dice (at or below the 25th percentile, 0.25); 4 reached epoch 2."""
    dice = {1e-5: [0.02], 2e-5: [NAN], 3e-5: [0.1], 1e-3: [0.3, 0.5], 2e-3: [0.35, 0.55], 3e-3: [0.4, 0.6]}
    dice |= {4e-3: [0.32, 0.5], 5e-3: [0.33], 6e-3: [0.34], 7e-3: [0.36], 8e-3: [0.37], 9e-3: [0.38]}
    trials_table, epochs = _rung_study(dice)
    # No outcome label sets the slow ones apart (they were pruned like the others of epoch 1).
    assert [f for f in find_findings(trials_table, LR) if "<" in f.condition] == []
    found = rung_findings(trials_table, epochs, LR)
    assert [f.sentence for f in found] == [
        "all 3 trials with learning rate < 0.0002 were in the bottom quarter of val Dice at epoch 1 "
        "(<= 0.1 of 12 trials)"
    ]
    assert found[0].action == ""  # a slow start is no failure: nothing to cut from the space yet


def test_rung_findings_need_enough_trials_at_an_epoch_and_a_real_quarter() -> None:
    few, few_epochs = _rung_study({1e-5: [0.0], 2e-5: [0.0], 3e-5: [0.0], 1e-3: [0.4], 2e-3: [0.5]})
    assert rung_findings(few, few_epochs, LR) == []
    # Half of the trials at Dice 0: the "bottom quarter" would be half of them, which says nothing.
    tied = {lr: [0.0] for lr in (1e-5, 2e-5, 3e-5, 4e-5, 5e-5)} | {1e-2: [0.4], 2e-2: [0.5], 3e-2: [0.6]}
    trials_table, epochs = _rung_study(tied)
    assert rung_findings(trials_table, epochs, LR) == []
