"""The study's next step from its trials' diagnoses, on hand-made trial tables."""

from __future__ import annotations

import json

import pandas as pd

from search.report.findings import Finding, find_findings, rung_findings
from search.report.next_step import next_step

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True},
    "model.norm": {"type": "categorical", "choices": ["batch", "none"]},
}


def frame(rows: list[tuple[float, str, str]], changes: dict | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "state": "COMPLETE",
                "learning_rate": lr,
                "model.norm": norm,
                "diagnosis": diagnosis,
                "diagnosis_changes": json.dumps(changes) if changes and diagnosis != "healthy" else None,
            }
            for lr, norm, diagnosis in rows
        ]
    )


def test_low_learning_rates_stall_raise_the_lower_bound() -> None:
    # 9 of the 12 stalled trials sit below 1e-5 (the cut is the round log-middle to the next, 1e-3).
    stalled_low = [(1e-6 * (i + 1), "batch", "stalled") for i in range(9)]
    stalled_high = [(1e-3, "batch", "stalled"), (2e-3, "none", "stalled"), (5e-3, "batch", "stalled")]
    healthy = [(1e-3, "batch", "healthy"), (3e-3, "none", "healthy"), (1e-2, "batch", "healthy")]
    step = next_step(frame(stalled_low + stalled_high + healthy), SPACE)
    assert step == (
        "9 of 12 stalled trials had learning rate < 9e-05: raise the space's lower bound of learning_rate "
        "to 9e-05 (in the study file's space: `learning_rate: {type: float, low: 9.0e-05, high: 0.1, log: "
        "true}`)."
    )


def test_a_choice_that_fails_is_dropped() -> None:
    rows = [(1e-3, "none", "input_scale")] * 4 + [(1e-3, "batch", "healthy")] * 3
    assert (
        next_step(frame(rows), SPACE)
        == "4 of 4 input_scale trials had norm none: drop none from model.norm's choices (in the study "
        "file's space: `model.norm: {type: categorical, choices: [batch]}`)."
    )


def test_without_a_parameter_pattern_the_common_advice() -> None:
    rows = [(1e-3, "batch", "overfitting"), (1e-3, "none", "overfitting"), (1e-3, "batch", "healthy")]
    step = next_step(frame(rows, {"epochs": 5}), SPACE)
    assert step.startswith("2 of 3 trials are overfitting: their diagnoses suggest epochs=5 (2 of 2)")


def test_healthy_study_has_nothing_to_fix() -> None:
    rows = [(1e-3, "batch", "healthy"), (2e-3, "batch", "unclear")]
    assert next_step(frame(rows), SPACE) == (
        "No failure cause dominates the 2 diagnosed trials (1 unclear): nothing to fix."
    )


def test_diverged_pruned_trials_give_the_learning_rate_range_as_the_step() -> None:
    """Issue 20: 13 trials stopped at the first rung (too early to judge), 3 that exploded there."""
    rows = [(10 ** (-5 + 0.25 * i), "batch", "too_early") for i in range(13)]
    rows += [(0.03, "batch", "diverged"), (0.3, "none", "diverged"), (0.7, "batch", "diverged")]
    table = frame(rows, {"learning_rate": 0.003})
    table["state"] = "PRUNED"
    table["epochs_run"] = 1
    assert next_step(table, SPACE) == (
        "3 of 3 diverged trials had learning rate > 0.02 (all in epoch 1): lower the space's upper bound of "
        "learning_rate to 0.02 (in the study file's space: `learning_rate: {type: float, low: 1.0e-06, high: "
        "0.02, log: true}`)."
    )


def test_without_a_cause_the_settings_that_lag_at_equal_epochs() -> None:
    """12 trials pruned at epoch 1, none with a cause: the step says which settings lagged there."""
    lrs = [1e-6, 2e-6, 3e-6] + [1e-3 * (i + 1) for i in range(9)]
    table = frame([(lr, "batch", "too_early") for lr in lrs])
    table["state"], table["stop_reason"], table["number"] = "PRUNED", "underperforming", range(12)
    dice = [0.01, 0.02, 0.0] + [0.3 + 0.01 * i for i in range(9)]
    epochs = pd.DataFrame({"trial_number": range(12), "epoch": 1, "val_dice": dice})
    lagging = rung_findings(table, epochs, SPACE)
    assert next_step(table, SPACE, findings=lagging) == (
        "No failure cause dominates the 12 diagnosed trials: nothing to fix; but all 3 trials with learning "
        "rate < 5e-05 were in the bottom quarter of val Dice at epoch 1 (<= 0.02 of 12 trials): compare "
        "their settings with the others'."
    )


def test_a_range_that_diverged_for_some_optimizers_only_is_the_step() -> None:
    """Issue 20, the unet-lr run: adam and adamw diverge in epoch 1 at learning rates where sgd trains,
    so "learning rate > x" alone is no finding (sgd's trials there did not diverge) and the step fell
    back to one trial's advice (learning_rate=0.003) instead of naming the range."""
    lr_space = {
        "learning_rate": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
        "optimizer": {"type": "categorical", "choices": ["adam", "adamw", "sgd"]},
        "scheduler": {"type": "categorical", "choices": ["none", "cosine", "plateau"]},
    }
    diverged = [(0.03, "adam"), (0.05, "adamw"), (0.1, "adam"), (0.3, "adamw"), (0.7, "adam")]
    sgd_high = [(0.04, "sgd"), (0.2, "sgd"), (0.5, "sgd"), (0.8, "sgd")]
    low = [(1e-5, "adam"), (1e-4, "sgd"), (3e-4, "adamw"), (1e-3, "adam"), (3e-3, "sgd"), (1e-2, "adamw")]
    rows = [
        {"optimizer": opt, "learning_rate": lr, "diagnosis": "diverged", "stop_reason": "diverged"}
        for lr, opt in diverged
    ]
    rows += [
        {"optimizer": opt, "learning_rate": lr, "diagnosis": "too_early", "stop_reason": "underperforming"}
        for lr, opt in sgd_high + low
    ]
    table = pd.DataFrame(rows).assign(state="PRUNED", epochs_run=1)
    table["scheduler"] = [["none", "cosine", "plateau"][i % 3] for i in range(len(table))]
    table["diagnosis_changes"] = [json.dumps({"learning_rate": 0.003})] * len(diverged) + [None] * 10
    table["number"] = range(len(table))
    found = find_findings(table, lr_space)
    assert found[0].sentence == (
        "all 5 trials with optimizer adam or adamw and learning rate > 0.02 diverged in epoch 1 (none of "
        "the 4 with optimizer sgd there did): narrow learning_rate to <= 0.02 for optimizer adam or adamw"
    )
    assert next_step(table, lr_space, findings=found) == (
        "5 of 5 diverged trials had optimizer adam or adamw and learning rate > 0.02 (all in epoch 1): "
        "narrow learning_rate to <= 0.02 for optimizer adam or adamw. A study file cannot make "
        "learning_rate's range depend on optimizer, so in its space either set `learning_rate: {type: "
        "float, low: 1.0e-05, high: 0.02, log: true}` (which also leaves out optimizer sgd above 0.02), or "
        "drop adam and adamw (`optimizer: {type: categorical, choices: [sgd]}`), or split it into two "
        "study files: one with optimizer [adam, adamw] and learning_rate high 0.02, one with [sgd] and the "
        "range as it is."
    )


def test_a_finding_about_few_of_the_cause_trials_is_not_the_step() -> None:
    """A finding must hold most (MIN_COVERAGE) of the cause's trials to be the study's step."""
    rows = [(1e-3 * (i + 1), "batch", "behind_peers") for i in range(6)]
    rows += [(lr, "batch", "healthy") for lr in (1.5e-3, 3.5e-3, 5.5e-3)]  # no range holds only the six
    few = Finding(
        "learning_rate", "learning rate < 0.0025", ("behind_peers",), 2, 2, 0.6, "x", 1, "", ("low", 0.0025)
    )
    step = next_step(frame(rows, {"learning_rate": 0.01}), SPACE, findings=[few])
    assert step.startswith("6 of 9 trials are behind_peers: their diagnoses suggest learning_rate=0.01")
