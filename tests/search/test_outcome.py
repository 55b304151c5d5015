"""The outcome vocabulary: decisions, how a stop is recorded on a real study, and who uses the names."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from search.diagnosis import Diagnosis
from search.execution.study import count_trials
from search.outcome import (
    DIAGNOSES,
    RETRYABLE_REASONS,
    STOP_DETAIL,
    STOP_EPOCH,
    STOP_MESSAGE,
    STOP_REASON,
    STOP_REASONS,
    StopDecision,
    is_retryable,
    json_number,
    record_stop,
)
from search.report.findings import LABEL_PHRASES, outcome_labels
from search.report.plots import OUTCOME_COLOURS

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_stop_decision_rejects_unknown_reason() -> None:
    assert {"plateau", "error", "worker_lost"} <= set(STOP_REASONS)
    with pytest.raises(ValueError, match="'tired'"):
        StopDecision("tired", 3)


def test_record_stop_writes_the_four_attributes_then_the_trial_can_fail() -> None:
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    record_stop(
        trial.set_user_attr, StopDecision("interrupted", 2, {"epochs_done": 2}, "interrupted after 2")
    )
    frozen = study.tell(trial, state=TrialState.FAIL)
    assert {k: frozen.user_attrs[k] for k in (STOP_REASON, STOP_EPOCH, STOP_DETAIL, STOP_MESSAGE)} == {
        "stop_reason": "interrupted",
        "stop_epoch": 2,
        "stop_detail": {"epochs_done": 2},
        "stop_message": "interrupted after 2",
    }
    # An interrupted trial is retried, not counted.
    assert is_retryable(frozen.user_attrs)
    assert count_trials(study).retryable == 1 and count_trials(study).failed == 0


def test_record_stop_without_message_leaves_it_unset() -> None:
    study = optuna.create_study()
    trial = study.ask()
    record_stop(trial.set_user_attr, StopDecision("worker_lost", 0, {"cause": "process gone"}))
    assert STOP_MESSAGE not in study.trials[0].user_attrs
    assert not is_retryable({STOP_REASON: "out_of_memory"}) and not is_retryable({})


def test_every_label_has_a_phrase_and_every_counted_reason_a_colour() -> None:
    assert set(STOP_REASONS) > RETRYABLE_REASONS
    for label in (*DIAGNOSES, *STOP_REASONS):
        assert label in LABEL_PHRASES
    assert set(STOP_REASONS) - RETRYABLE_REASONS <= set(OUTCOME_COLOURS)
    for label in DIAGNOSES:
        # Every name the vocabulary lists is a valid diagnosis ("unclear" names its two causes).
        Diagnosis(label, "summary", candidates=("stalled", "healthy") if label == "unclear" else ())
    assert outcome_labels("worker_lost", "healthy") == frozenset()
    assert outcome_labels("error", "stalled", state="FAIL") == frozenset({"error", "stalled"})


@pytest.mark.parametrize(("value", "expected"), [(0.5, 0.5), (math.nan, "nan"), (-math.inf, "-inf")])
def test_json_number(value: float, expected: float | str) -> None:
    assert json_number(value) == expected
