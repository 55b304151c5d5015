"""diagnose() on crafted training histories: one per label, the evidence numbers, short histories."""

from __future__ import annotations

import json
import math

import pytest

from search.diagnosis import Diagnosis, diagnose
from unet.history import EpochRecord

NAN, INF = math.nan, math.inf


def _history(
    train: list[float],
    val: list[float],
    dice: list[float],
    *,
    grad: list[float] | None = None,
    grad_max: list[float] | None = None,
    learning_rate: float = 1e-3,
) -> list[dict[str, float]]:
    """Rows as fit() produces them (EpochRecord.to_dict); gradients calm unless given."""
    n = len(train)
    grad = grad or [1.0] * n
    grad_max = grad_max or [2.0] * n
    return [
        EpochRecord(
            epoch=i + 1,
            train_loss=train[i],
            val_loss=val[i],
            val_dice=dice[i],
            val_iou=dice[i] / (2 - dice[i]) if math.isfinite(dice[i]) else NAN,
            learning_rate=learning_rate,
            grad_norm=grad[i],
            grad_norm_max=grad_max[i],
            seconds=1.0,
            images_per_s=10.0,
        ).to_dict()
        for i in range(n)
    ]


HEALTHY = _history([1.0, 0.6, 0.45, 0.35, 0.3], [0.9, 0.6, 0.5, 0.42, 0.4], [0.3, 0.5, 0.6, 0.65, 0.66])

CASES = {
    "nan train loss": (_history([1.0, 0.8, NAN], [1.0, 0.9, 0.8], [0.1, 0.2, NAN]), "diverged"),
    "inf val loss at epoch 1": (_history([1.0], [INF], [0.0]), "diverged"),
    # 3.0 > 5 x 0.5 (first val loss).
    "val loss 6x its start": (
        _history([1, 0.8, 0.7, 0.6], [0.5, 0.6, 1.5, 3.0], [0.3, 0.4, 0.2, 0.1]),
        "diverged",
    ),
    # (0.70 - 0.68) / 0.70 = 2.9 % < 5 %.
    "stalled": (_history([0.7, 0.69, 0.69, 0.68, 0.68], [0.7] * 5, [0.0, 0.01, 0.0, 0.01, 0.0]), "stalled"),
    "background only": (
        _history([0.7, 0.4, 0.2, 0.15, 0.12], [0.6, 0.35, 0.2, 0.15, 0.12], [0.0, 0.01, 0.02, 0.01, 0.02]),
        "background_only",
    ),
    "all-NaN Dice counts as 0": (
        _history([0.7, 0.4, 0.2, 0.15], [0.6, 0.35, 0.2, 0.15], [NAN] * 4),
        "background_only",
    ),
    # Val loss minimum 0.45 at epoch 3; last two 0.56 and 0.62 are 24 % and 38 % above it.
    "overfitting by val loss": (
        _history(
            [1.0, 0.6, 0.4, 0.3, 0.2, 0.12, 0.08],
            [0.9, 0.6, 0.45, 0.45, 0.5, 0.56, 0.62],
            [0.3, 0.5, 0.6, 0.62, 0.6, 0.58, 0.55],
        ),
        "overfitting",
    ),
    # Val loss keeps its minimum at the end, but Dice falls from 0.70 (epoch 3) to 0.62 and 0.60.
    "overfitting by Dice": (
        _history([1.0, 0.6, 0.4, 0.3, 0.2], [0.9, 0.6, 0.5, 0.45, 0.44], [0.3, 0.5, 0.7, 0.62, 0.6]),
        "overfitting",
    ),
    # 40 / median(1, 1, 1, 1) = 40 > 10; epoch 1's 20 / 2 is left out (fresh initialisation).
    "gradient spike": (
        _history(
            [1.0, 0.6, 0.45, 0.35, 0.3],
            [0.9, 0.6, 0.5, 0.42, 0.4],
            [0.3, 0.5, 0.6, 0.65, 0.66],
            grad=[2, 1, 1, 1, 1],
            grad_max=[20, 3, 40, 3, 3],
        ),
        "unstable",
    ),
    "big gradients in epoch 1 only": (
        _history(
            [1.0, 0.6, 0.45, 0.35, 0.3],
            [0.9, 0.6, 0.5, 0.42, 0.4],
            [0.3, 0.5, 0.6, 0.65, 0.66],
            grad=[2, 1, 1, 1, 1],
            grad_max=[50, 3, 3, 3, 3],
        ),
        "healthy",
    ),
    # Train loss 0.45 -> 0.8 (+78 %) from epoch 3 to 4.
    "loss jump": (
        _history([1.0, 0.6, 0.45, 0.8, 0.35], [0.9, 0.6, 0.5, 0.7, 0.4], [0.3, 0.5, 0.6, 0.5, 0.66]),
        "unstable",
    ),
    "healthy": (HEALTHY, "healthy"),
    # First match wins: Dice near 0 and a loss jump (0.2 -> 0.35 = +75 %) is background_only.
    "background beats unstable": (
        _history([0.7, 0.4, 0.2, 0.35, 0.12], [0.6, 0.35, 0.2, 0.3, 0.12], [0.0, 0.01, 0.02, 0.01, 0.02]),
        "background_only",
    ),
    # Short histories: trends need 3 epochs, so only divergence and instability are judged, and the rest
    # is too early to call healthy (issue 20).
    "1 epoch": (_history([1.0], [0.9], [0.0]), "too_early"),
    "2 flat epochs with Dice 0": (_history([1.0, 0.99], [0.9, 0.9], [0.0, 0.0]), "too_early"),
    "2 epochs with a jump": (_history([1.0, 1.6], [0.9, 1.0], [0.1, 0.1]), "unstable"),
}


@pytest.mark.parametrize(("history", "label"), list(CASES.values()), ids=list(CASES))
def test_labels(history: list[dict[str, float]], label: str) -> None:
    diagnosis = diagnose(history)
    assert diagnosis.label == label
    assert diagnosis.summary.startswith(f"{label}: ")
    assert "\n" not in diagnosis.summary
    json.dumps(diagnosis.evidence, allow_nan=False)  # raises on NaN/inf


def test_stalled_evidence_and_learning_rate() -> None:
    history = CASES["stalled"][0]
    diagnosis = diagnose(history, params={"learning_rate": 1e-5})
    assert diagnosis.evidence["train_decrease"] == pytest.approx(0.02 / 0.7)
    assert diagnosis.evidence["epochs"] == 5
    assert diagnosis.summary.startswith("stalled: train loss moved 2.9% in 5 epochs (0.7 to 0.68) with ")
    assert "learning rate 1e-05" in diagnosis.summary
    # Without params, the learning rate comes from the history.
    assert "learning rate 0.001" in diagnose(history).summary


def test_diverged_names_epoch_loss_and_learning_rate() -> None:
    diagnosis = diagnose(CASES["nan train loss"][0], params={"learning_rate": 0.3})
    assert diagnosis.evidence["epoch"] == 3
    assert diagnosis.evidence["loss"] == "train loss"
    assert diagnosis.evidence["value"] == "nan"
    assert diagnosis.evidence["last_train_loss"] == "nan"
    assert "train loss became nan at epoch 3 with learning rate 0.3" in diagnosis.summary
    ratio = diagnose(CASES["val loss 6x its start"][0]).evidence
    assert (ratio["epoch"], ratio["loss"], ratio["ratio"]) == (4, "val loss", pytest.approx(6.0))


def test_background_only_names_the_loss() -> None:
    diagnosis = diagnose(CASES["background only"][0], params={"loss": "bce"})
    assert diagnosis.evidence["best_dice"] == 0.02
    assert diagnosis.evidence["train_decrease"] == pytest.approx(0.58 / 0.7)
    assert "val Dice ended at 0.020 (best 0.020)" in diagnosis.summary
    assert "loss 'bce'" in diagnosis.summary


def test_overfitting_evidence() -> None:
    by_loss = diagnose(CASES["overfitting by val loss"][0]).evidence
    assert by_loss["min_val_loss_epoch"] == 3
    assert by_loss["val_rise"] == pytest.approx((0.62 - 0.45) / 0.45)
    by_dice = diagnose(CASES["overfitting by Dice"][0]).evidence
    assert by_dice["dice_drop"] == pytest.approx(0.1)
    assert (by_dice["best_dice"], by_dice["best_dice_epoch"]) == (0.7, 3)


def test_rising_val_loss_with_jumping_train_loss_is_not_overfitting() -> None:
    # Val loss rises as in overfitting, but train loss jumps 0.2 -> 0.5 on the way: that is instability.
    history = _history(
        [1.0, 0.6, 0.4, 0.2, 0.5, 0.15],
        [0.9, 0.6, 0.45, 0.5, 0.56, 0.62],
        [0.3, 0.5, 0.6, 0.62, 0.6, 0.58],
    )
    assert diagnose(history).label == "unstable"


def test_unstable_evidence() -> None:
    spike = diagnose(CASES["gradient spike"][0]).evidence
    assert (spike["grad_norm_max"], spike["median_grad_norm"], spike["grad_ratio"]) == (40.0, 1.0, 40.0)
    jump = diagnose(CASES["loss jump"][0]).evidence
    assert (jump["loss"], jump["jump_epoch"]) == ("train", 4)
    assert jump["jump"] == pytest.approx(0.35 / 0.45)


def test_healthy_summary_and_short_history_note() -> None:
    diagnosis = diagnose(HEALTHY)
    assert diagnosis.summary == (
        "healthy: val loss went from 0.9 to 0.4 (-56%) in 5 epochs, best val Dice 0.660 at epoch 5"
    )
    assert diagnosis.evidence["val_decrease"] == pytest.approx(0.5 / 0.9)
    short = diagnose(CASES["1 epoch"][0])
    assert short.summary.startswith("too_early: ended at epoch 1: val loss went from 0.9 to 0.9")
    assert short.summary.endswith("3 epochs are needed to judge the trends")


def test_none_values_are_read_as_nan() -> None:
    # A SQL store may give NaN back as NULL: the epoch-2 losses below are what a diverged run leaves.
    rows = [dict(row) for row in HEALTHY[:3]]
    rows[1] |= {"train_loss": None, "val_loss": None, "val_dice": None}
    diagnosis = diagnose(rows)
    assert diagnosis.label == "diverged"
    assert (diagnosis.evidence["epoch"], diagnosis.evidence["value"]) == (2, "nan")


def test_empty_history_is_an_error() -> None:
    with pytest.raises(ValueError, match="history is empty"):
        diagnose([])


def test_unknown_label_is_rejected() -> None:
    with pytest.raises(ValueError, match="'sad'"):
        Diagnosis("sad", "sad: no")


def test_a_trial_stopped_as_diverged_is_diagnosed_diverged_from_one_epoch():
    # fit stops on a val loss far above the initial step's; one finite epoch cannot show it by itself.
    row = {
        "epoch": 1,
        "train_loss": 26.9,
        "val_loss": 3.5e6,
        "val_dice": 0.02,
        "val_iou": 0.01,
        "learning_rate": 10.0,
        "grad_norm": 2.8,
        "grad_norm_max": 9.0,
        "seconds": 1.0,
        "images_per_s": 50.0,
    }
    assert diagnose([row]).label != "diverged"
    found = diagnose([row], params={"learning_rate": 10.0}, stop_reason="diverged")
    assert found.label == "diverged"
    assert "learning rate 10" in found.summary and "lower it 10x" in found.summary
