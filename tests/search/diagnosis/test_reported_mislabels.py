"""The four mislabels reported in issue 15, as the curves showed them: each was labelled confidently and
wrongly by the rules that read the validation curve and too little else."""

from __future__ import annotations

import pytest

from search.diagnosis import diagnose
from tests.search.diagnosis.conftest import rows

# Masks that do not match the images: train loss moved 6 % in 10 epochs (0.70 to 0.658), val Dice
# drifted down from 0.17 to 0.11, at a true foreground share of 10 % (chance Dice 0.18); the training
# Dice never left chance either. Was: overfitting (val Dice fell from its best while train loss fell).
NOT_MATCHING = (
    rows(
        [0.70, 0.69, 0.685, 0.68, 0.675, 0.67, 0.667, 0.664, 0.661, 0.658],
        [0.70, 0.70, 0.705, 0.71, 0.71, 0.715, 0.72, 0.72, 0.725, 0.73],
        [0.17, 0.16, 0.15, 0.14, 0.13, 0.13, 0.12, 0.12, 0.11, 0.11],
        train_dice=[0.17, 0.17, 0.18, 0.17, 0.18, 0.18, 0.17, 0.18, 0.18, 0.18],
        pred_fg=[0.5, 0.45, 0.4, 0.4, 0.35, 0.35, 0.3, 0.3, 0.3, 0.3],
        true_fg=0.1,
    ),
    {"learning_rate": 1e-3, "loss": "dice_bce", "model.norm": "batch"},
    "no_signal",
)
# Unnormalised 0..255 inputs, no normalisation layers: huge first losses and gradients, then the model
# collapses to predicting nothing (Dice 0.18 at epoch 1, 0 at the end). Was: overfitting (Dice fell).
UNNORMALISED = (
    rows(
        [27.6, 5.39, 2.62, 1.88, 1.68, 1.6, 1.55, 1.52, 1.51, 1.5],
        [6.78, 2.89, 1.98, 1.69, 1.6, 1.55, 1.53, 1.51, 1.51, 1.51],
        [0.184, 0.17, 0.108, 0.032, 0.035, 0.032, 0.016, 0.008, 0.004, 0.007],
        train_dice=[0.195, 0.195, 0.162, 0.099, 0.042, 0.033, 0.019, 0.01, 0.007, 0.004],
        pred_fg=[0.946, 0.484, 0.199, 0.079, 0.064, 0.041, 0.021, 0.013, 0.008, 0.007],
        true_fg=0.104,
        grad=[284, 67.7, 29, 10.6, 4.05, 2.9, 1.71, 0.93, 0.53, 0.42],
        grad_max=[389, 77.9, 33.9, 14.5, 4.39, 3.33, 1.9, 1.1, 0.6, 0.44],
        input_std=39.9,
        input_max=255.0,
    ),
    {"learning_rate": 3e-3, "loss": "dice_bce", "model.norm": "none"},
    "input_scale",
)
# SGD at a learning rate high enough to make val loss jump 14x (0.40 to 5.6, under 5x its start) and
# recover; the last two epochs sit above the minimum. Was: overfitting.
SGD_SPIKE = (
    rows(
        [1.54, 1.02, 0.64, 0.30, 0.23, 0.22, 0.20, 0.18, 0.16, 0.15],
        [1.26, 0.40, 5.6, 2.9, 1.85, 1.0, 0.54, 0.52, 0.62, 0.66],
        [0.07, 0.76, 0.41, 0.43, 0.59, 0.70, 0.80, 0.81, 0.77, 0.75],
        train_dice=[0.21, 0.40, 0.67, 0.86, 0.87, 0.88, 0.89, 0.91, 0.92, 0.92],
        pred_fg=[0.005, 0.14, 0.40, 0.38, 0.25, 0.19, 0.15, 0.15, 0.155, 0.154],
        true_fg=0.104,
        grad=[0.82, 0.48, 0.56, 0.23, 0.19, 0.21, 0.26, 0.27, 0.47, 0.86],
        grad_max=[1.02, 0.48, 0.61, 0.24, 0.21, 0.22, 0.32, 0.30, 0.61, 0.89],
    ),
    {"learning_rate": 0.3, "optimizer": "sgd", "loss": "dice_bce", "model.norm": "batch"},
    "unstable",
)
# BCE on 1.9 % foreground, still learning: it predicts 26-40 % of the pixels as foreground, Dice low
# (0.04 to 0.135 is below 0.05 for most epochs). Was: background_only, whose advice points the wrong way.
FLOOD = (
    rows(
        [0.912, 0.864, 0.818, 0.768, 0.72, 0.683, 0.643, 0.612, 0.584, 0.56],
        [0.714, 0.797, 0.915, 1.0, 1.1, 1.2, 1.25, 1.3, 1.35, 1.4],
        [0.038, 0.039, 0.041, 0.041, 0.042, 0.044, 0.045, 0.046, 0.047, 0.048],
        train_dice=[0.037, 0.047, 0.051, 0.057, 0.067, 0.087, 0.12, 0.171, 0.236, 0.299],
        pred_fg=[0.592, 0.786, 0.852, 0.877, 0.874, 0.831, 0.719, 0.572, 0.40, 0.26],
        true_fg=0.0189,
    ),
    {"learning_rate": 1e-3, "loss": "bce", "model.norm": "batch"},
    "foreground_flood",
)
CASES = {
    "masks not matching": NOT_MATCHING,
    "0-255 inputs": UNNORMALISED,
    "SGD spike": SGD_SPIKE,
    "flood": FLOOD,
}


@pytest.mark.parametrize(("history", "settings", "label"), list(CASES.values()), ids=list(CASES))
def test_reported_mislabel_is_fixed(history, settings, label) -> None:
    found = diagnose(history, params=settings)
    assert found.label == label, found.summary
    assert found.summary.startswith(f"{label}: ")
