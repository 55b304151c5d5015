"""diagnose() with the per-epoch evidence: the causes it separates, traps, the advice, and "unclear".

The histories are tables of numbers shaped like the bench's crafted runs (bench/diagnosis), rounded.
"""

from __future__ import annotations

import json

import pytest

from search.diagnosis import CAUSES, DIAGNOSES, diagnose
from tests.search.diagnosis.conftest import rows
from tests.search.diagnosis.test_diagnosis_rules import CASES as OLD_CASES
from tests.search.diagnosis.test_reported_mislabels import CASES as REPORTED

TRUE = 0.104  # the synthetic data's foreground share; chance Dice 2p / (1 + p) = 0.188
FALLING = [1.69, 1.58, 1.49, 1.41, 1.34, 1.28, 1.23, 1.19, 1.16, 1.14]
BN = {"learning_rate": 3e-3, "loss": "dice_bce", "model.norm": "batch", "model.base_filters": 8}

HEALTHY = rows(
    FALLING,
    [1.57, 1.5, 1.43, 1.39, 1.3, 1.2, 1.16, 1.16, 1.16, 1.12],
    [0.21, 0.29, 0.38, 0.45, 0.51, 0.59, 0.64, 0.65, 0.64, 0.69],
    train_dice=[0.2, 0.27, 0.34, 0.44, 0.56, 0.65, 0.71, 0.75, 0.77, 0.78],
    pred_fg=[0.77, 0.6, 0.43, 0.35, 0.29, 0.24, 0.2, 0.2, 0.21, 0.19],
    true_fg=TRUE,
    grad_first=[0.18, 0.19, 0.13, 0.06, 0.05, 0.05, 0.04, 0.04, 0.05, 0.03],
    grad_last=[0.53, 0.44, 0.34, 0.29, 0.27, 0.26, 0.27, 0.28, 0.29, 0.3],
)

CASES = {
    # 0..255 inputs, but batch norm and a good fit: the scale did no harm.
    "raw inputs with batch norm (trap)": (
        rows(
            FALLING,
            [1.57] * 10,
            [0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.62, 0.64, 0.66, 0.68],
            train_dice=[0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.72, 0.74, 0.76],
            pred_fg=[0.3, 0.25, 0.2, 0.15, 0.12, 0.11, 0.11, 0.1, 0.1, 0.1],
            true_fg=TRUE,
            input_std=40.0,
            input_max=255.0,
        ),
        BN,
        "healthy",
    ),
    # The first layer's gradient is 1e-5 of the last's: the stem's units are dead.
    "dead first layer": (
        rows(
            [1.5, 1.45, 1.42, 1.40, 1.39, 1.38],
            [1.5, 1.46, 1.43, 1.41, 1.40, 1.39],
            [0.0] * 6,
            train_dice=[0.0] * 6,
            pred_fg=[0.0] * 6,
            true_fg=TRUE,
            grad_first=[0.0, 1e-6, 1e-6, 0.0, 0.0, 1e-6],
            grad_last=[0.1, 0.1, 0.09, 0.09, 0.08, 0.08],
        ),
        BN | {"model.norm": "none"},
        "vanishing_gradients",
    ),
    # Dice-trained, masks shuffled: it memorises training masks (train Dice 0.4) while val stays at chance.
    "no signal with memorisation (trap: overfitting)": (
        rows(
            [1.7, 1.64, 1.6, 1.56, 1.53, 1.5, 1.47, 1.45, 1.42, 1.39],
            [1.49, 1.53, 1.55, 1.57, 1.57, 1.57, 1.56, 1.55, 1.54, 1.53],
            [0.13, 0.146, 0.154, 0.157, 0.163, 0.161, 0.159, 0.149, 0.139, 0.138],
            train_dice=[0.19, 0.2, 0.21, 0.22, 0.23, 0.25, 0.27, 0.3, 0.34, 0.4],
            pred_fg=[0.36, 0.54, 0.64, 0.7, 0.72, 0.71, 0.67, 0.62, 0.56, 0.49],
            true_fg=TRUE,
        ),
        BN,
        "no_signal",
    ),
    # BCE on masks that are 78 % foreground (membranes): it learns the prior, predicts foreground
    # everywhere and scores the all-foreground Dice 2p / (1 + p) = 0.876, which looks like success.
    "at the constant floor of mostly-foreground masks (trap: no_signal)": (
        rows(
            [0.69, 0.55, 0.53, 0.52, 0.52, 0.52],
            [0.56, 0.53, 0.52, 0.52, 0.52, 0.52],
            [0.861, 0.874, 0.876, 0.876, 0.875, 0.876],
            train_dice=[0.85, 0.87, 0.876, 0.877, 0.877, 0.877],
            pred_fg=[0.93, 0.99, 1.0, 1.0, 1.0, 1.0],
            true_fg=0.78,
        ),
        BN | {"loss": "bce"},
        "constant_floor",
    ),
    # BCE on 1.9 % foreground of faint objects: after a short flood it predicts nothing.
    "background only with the shares": (
        rows(
            [0.85, 0.69, 0.55, 0.48, 0.41, 0.36, 0.31, 0.27],
            [0.5, 0.29, 0.49, 0.27, 0.24, 0.22, 0.19, 0.18],
            [0.033, 0.019, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            train_dice=[0.034, 0.045, 0.07, 0.02, 0, 0, 0, 0],
            pred_fg=[0.21, 0.044, 0.002, 0.0006, 0.0001, 0, 0, 0],
            true_fg=0.0189,
        ),
        BN | {"loss": "bce", "learning_rate": 1e-2},
        "background_only",
    ),
    # pos_weight 100 on 1.9 % foreground: 20x too much foreground, Dice 0.09.
    "pos_weight flood (trap: background_only)": (
        rows(
            [1.99, 1.59, 1.38, 1.19, 1.05, 0.98, 0.92, 0.88],
            [1.9, 1.69, 1.43, 1.16, 1.05, 1.06, 1.08, 1.07],
            [0.038, 0.046, 0.048, 0.051, 0.053, 0.056, 0.061, 0.067],
            train_dice=[0.04, 0.049, 0.051, 0.053, 0.056, 0.06, 0.066, 0.074],
            pred_fg=[0.69, 0.78, 0.76, 0.73, 0.69, 0.65, 0.6, 0.55],
            true_fg=0.0189,
        ),
        BN | {"loss": "bce", "pos_weight": 100.0},
        "foreground_flood",
    ),
    # Two filters: learns a little, levels off at train Dice 0.33 = val Dice, predicting 3.5x the
    # foreground under a Dice loss (a symptom, not the pos_weight flood).
    "too little capacity (trap: flood)": (
        rows(
            [1.69, 1.66, 1.63, 1.6, 1.57, 1.55, 1.54, 1.53, 1.52, 1.51, 1.5, 1.49],
            [1.57, 1.57, 1.56, 1.54, 1.52, 1.51, 1.5, 1.5, 1.5, 1.5, 1.49, 1.49],
            [0.165, 0.158, 0.175, 0.197, 0.25, 0.313, 0.337, 0.34, 0.333, 0.33, 0.336, 0.346],
            train_dice=[0.18, 0.2, 0.21, 0.23, 0.24, 0.25, 0.26, 0.27, 0.28, 0.29, 0.31, 0.33],
            pred_fg=[0.57, 0.51, 0.44, 0.37, 0.3, 0.26, 0.27, 0.32, 0.36, 0.39, 0.39, 0.36],
            true_fg=TRUE,
        ),
        BN | {"model.base_filters": 2},
        "underfitting",
    ),
    # Four noisy training images: train Dice 0.998, val Dice from 0.434 (epoch 9) down to 0.32.
    "overfitting with the gap": (
        rows(
            [1.54, 1.37, 1.24, 1.15, 1.06, 1.0, 0.95, 0.91, 0.88, 0.85, 0.82, 0.79, 0.76],
            [1.55, 1.52, 1.51, 1.51, 1.47, 1.39, 1.31, 1.25, 1.19, 1.15, 1.14, 1.13, 1.13],
            [0.23, 0.27, 0.29, 0.3, 0.33, 0.36, 0.4, 0.41, 0.434, 0.42, 0.39, 0.34, 0.32],
            train_dice=[0.21, 0.37, 0.49, 0.59, 0.66, 0.75, 0.83, 0.88, 0.9, 0.94, 0.94, 0.97, 0.998],
            pred_fg=[0.7, 0.6, 0.55, 0.5, 0.45, 0.34, 0.2, 0.13, 0.08, 0.05, 0.04, 0.04, 0.03],
            true_fg=TRUE,
        ),
        BN | {"model.base_filters": 16},
        "overfitting",
    ),
    # Val Dice falls from its best while train loss falls, but train Dice is no higher than val Dice:
    # it fits nothing, so it is not overfitting (the old rules said it was).
    "falling Dice without a fit (trap: overfitting)": (
        rows(
            [1.0, 0.9, 0.85, 0.82, 0.8, 0.79],
            [1.0, 0.92, 0.9, 0.91, 0.92, 0.93],
            [0.3, 0.35, 0.38, 0.34, 0.31, 0.3],
            train_dice=[0.3, 0.33, 0.35, 0.34, 0.32, 0.31],
            pred_fg=[0.2, 0.15, 0.12, 0.12, 0.11, 0.11],
            true_fg=TRUE,
        ),
        BN,
        "underfitting",
    ),
}


def _diagnosed(name: str):
    history, settings, _ = CASES[name]
    return diagnose(history, params=settings)


@pytest.mark.parametrize(("history", "settings", "label"), list(CASES.values()), ids=list(CASES))
def test_causes(history, settings, label) -> None:
    found = diagnose(history, params=settings)
    assert found.label == label, found.summary
    assert found.summary.startswith(f"{label}: ") and "\n" not in found.summary
    json.dumps(found.evidence, allow_nan=False)


def test_every_label_is_covered() -> None:
    covered = {label for *_, label in CASES.values()} | {label for _, label in OLD_CASES.values()}
    covered |= {label for *_, label in REPORTED.values()} | {"unclear"}  # unclear: the tests below
    covered |= {"too_early", "behind_peers"}  # short trials and their peers: test_early_stopping.py
    assert covered == set(DIAGNOSES)


def test_each_cause_names_its_deciding_numbers() -> None:
    flood = _diagnosed("pos_weight flood (trap: background_only)")
    assert flood.evidence["flood_ratio"] == pytest.approx(0.55 / 0.0189)
    assert "29.1x" in flood.summary and "pos_weight 100" in flood.summary
    no_signal = _diagnosed("no signal with memorisation (trap: overfitting)")
    assert no_signal.evidence["chance_dice"] == pytest.approx(2 * TRUE / (1 + TRUE))
    vanishing = _diagnosed("dead first layer")
    assert vanishing.evidence["grad_ratio_first_total"] < 1e-4
    overfit = _diagnosed("overfitting with the gap")
    assert overfit.evidence["train_val_gap"] == pytest.approx(0.998 - 0.32)


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("pos_weight flood (trap: background_only)", {"pos_weight": None}),
        ("too little capacity (trap: flood)", {"model.base_filters": 16}),
        ("overfitting with the gap", {"epochs": 9}),
        ("background only with the shares", {"loss": "dice_bce"}),
        ("dead first layer", {"model.norm": "batch"}),
        # The background weighed halfway (in log) to its 22 % against the 78 %: sqrt(0.22 / 0.78).
        ("at the constant floor of mostly-foreground masks (trap: no_signal)", {"pos_weight": 0.53}),
    ],
)
def test_advice_as_settings(name: str, changes: dict) -> None:
    assert _diagnosed(name).changes == changes


def test_stall_at_a_low_learning_rate_suggests_the_usual_one() -> None:
    flat = rows([1.73] * 6, [1.54, 1.57, 1.6, 1.62, 1.64, 1.66], [0.1, 0.13, 0.15, 0.16, 0.16, 0.17])
    found = diagnose(flat, params={"learning_rate": 1e-6, "optimizer": "adam"})
    assert found.label == "stalled" and found.changes == {"learning_rate": 1e-3}
    sgd = diagnose(flat, params={"learning_rate": 1e-5, "optimizer": "sgd"})
    assert sgd.changes == {"learning_rate": 3e-2}


def test_borderline_before_a_clear_cause_is_unclear() -> None:
    # Inputs up to 30 (borderline: not clearly raw 8-bit) in a model without norm, and a stalled loss.
    history = rows([1.0, 0.99, 0.985, 0.98, 0.98], [1.0] * 5, [0.05] * 5, input_max=30.0, input_std=6.0)
    found = diagnose(history, params={"learning_rate": 1e-5, "model.norm": "none"})
    assert found.label == "unclear"
    assert found.candidates == ("input_scale", "stalled")
    assert found.summary.startswith("unclear: input_scale or stalled: ")


def test_only_borderline_evidence_is_unclear_with_two_causes() -> None:
    # A train loss that fell 6 % at a low learning rate: a stall is likely, not certain.
    history = rows([1.0, 0.97, 0.96, 0.95, 0.94], [1.0, 0.99, 0.98, 0.97, 0.96], [0.5, 0.55, 0.6, 0.6, 0.61])
    found = diagnose(history, params={"learning_rate": 1e-5})
    assert found.label == "unclear" and found.candidates == ("stalled", "healthy")
    assert found.changes == {"learning_rate": 1e-3}


def test_causes_are_the_vocabulary_order() -> None:
    assert DIAGNOSES[: len(CAUSES)] == CAUSES and DIAGNOSES[-2:] == ("healthy", "unclear")


def test_constant_floor_is_judged_against_the_headroom_above_it() -> None:
    """On 78 % foreground the floor is 0.876: a model that reaches 0.95 learned (60 % of the headroom), one
    at 0.90 is borderline, and the same curves on sparse masks stay no_signal's (check the masks)."""
    history, settings, _ = CASES["at the constant floor of mostly-foreground masks (trap: no_signal)"]
    found = diagnose(history, params=settings)
    assert found.evidence["constant_dice"] == pytest.approx(2 * 0.78 / 1.78)
    assert "0.876" in found.summary and "polarity" in found.summary

    def dense(best: float, pred: float = 0.9) -> list[dict[str, float | str]]:
        return rows(
            [0.69, 0.45, 0.35, 0.3, 0.27, 0.25],
            [0.5, 0.4, 0.33, 0.3, 0.28, 0.27],
            [0.86, 0.88, best - 0.02, best - 0.01, best, best],
            train_dice=[0.86, 0.9, 0.93, 0.95, 0.96, 0.97],
            pred_fg=[0.95, 0.9, pred, pred, pred, pred],
            true_fg=0.78,
        )

    assert diagnose(dense(0.95, pred=0.8), params=settings).label == "healthy"
    borderline = diagnose(dense(0.91), params=settings)
    assert borderline.label == "unclear" and borderline.candidates == ("constant_floor", "healthy")
    # Predicting less foreground than there is, at the floor: not the majority class, nothing learnable.
    assert diagnose(dense(0.876, pred=0.6), params=settings).label == "no_signal"
    # Two epochs at the floor: too early to blame the loss.
    assert diagnose(history[:2], params=settings).label == "too_early"


def test_a_model_that_learned_mostly_foreground_masks_is_not_at_chance() -> None:
    """Sparse objects with inverted masks (97.4 % foreground, chance 0.987): a bench-sized fit reached val
    Dice 0.995, 62 % of the headroom above chance, and was labelled no_signal by the absolute margin."""
    history = rows(
        [0.62, 0.3, 0.16, 0.1, 0.08, 0.07],
        [0.4, 0.2, 0.12, 0.09, 0.08, 0.07],
        [0.987, 0.989, 0.992, 0.994, 0.995, 0.995],
        train_dice=[0.98, 0.99, 0.993, 0.995, 0.996, 0.997],
        pred_fg=[0.99, 0.98, 0.975, 0.972, 0.972, 0.972],
        true_fg=0.974,
    )
    assert diagnose(history, params=BN).label == "healthy"
