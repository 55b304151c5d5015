"""The crafted runs: each a pinned configuration and dataset whose failure (or health) is known.

At least three runs per cause, on synthetic data and on the real nuclei images, several built as traps
that look like another cause (``looks_like``). ``fixed_data`` is the dataset a follow-up run uses when
the diagnosis tells the user to fix the data (normalise it, check that the masks match).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Every run: a 2-level U-Net with 8 filters, batch 4, 12 epochs of Adam at 3e-3 on Dice + BCE, batch norm.
BASE: dict[str, Any] = {
    "model.depth": 2,
    "model.base_filters": 8,
    "model.norm": "batch",
    "optimizer": "adam",
    "learning_rate": 3e-3,
    "loss": "dice_bce",
    "batch_size": 4,
    "epochs": 12,
    "seed": 0,
    "device": "cpu",
    "divergence_factor": 100.0,
}


@dataclass(frozen=True)
class Case:
    """One crafted run."""

    name: str
    cause: str  # the intended diagnosis
    data: str  # a name of bench.diagnosis.data.BUILDERS
    settings: dict[str, Any] = field(default_factory=dict)  # changes to BASE
    init: str | None = None  # "dead_stem": the first convolution's bias at -50 (its ReLUs never fire)
    fixed_data: str | None = None  # the repaired dataset, for causes in the data
    looks_like: str = ""  # the cause it may be mistaken for (a trap), if any

    def config_settings(self) -> dict[str, Any]:
        return BASE | self.settings


CASES: tuple[Case, ...] = (
    # healthy
    Case("healthy-synthetic", "healthy", "synthetic"),
    Case("healthy-nuclei", "healthy", "dsb"),
    Case("healthy-bce-sparse", "healthy", "synthetic-sparse", {"loss": "bce"}, looks_like="foreground_flood"),
    # diverged
    Case("diverged-adam-lr10", "diverged", "synthetic", {"learning_rate": 10.0}),
    Case("diverged-sgd-lr10", "diverged", "synthetic", {"optimizer": "sgd", "learning_rate": 10.0}),
    Case("diverged-nuclei-adam-lr1", "diverged", "dsb", {"learning_rate": 1.0}),
    # stalled
    Case("stalled-adam-1e-6", "stalled", "synthetic", {"learning_rate": 1e-6}),
    Case("stalled-sgd-1e-5", "stalled", "synthetic", {"optimizer": "sgd", "learning_rate": 1e-5}),
    Case("stalled-nuclei-adam-1e-6", "stalled", "dsb", {"learning_rate": 1e-6}, looks_like="no_signal"),
    # input_scale
    Case(
        "input-scale-raw-no-norm",
        "input_scale",
        "synthetic-raw",
        {"model.norm": "none"},
        fixed_data="synthetic",
        looks_like="overfitting",
    ),
    Case(
        "input-scale-raw-no-norm-b",
        "input_scale",
        "synthetic-b-raw",
        {"model.norm": "none"},
        fixed_data="synthetic-b",
        looks_like="background_only",
    ),
    Case("input-scale-nuclei-raw", "input_scale", "dsb-raw", {"model.norm": "none"}, fixed_data="dsb"),
    # vanishing_gradients
    Case(
        "vanishing-dead-stem",
        "vanishing_gradients",
        "synthetic",
        {"model.norm": "none"},
        init="dead_stem",
        looks_like="stalled",
    ),
    Case(
        "vanishing-dead-stem-elu",
        "vanishing_gradients",
        "synthetic",
        {"model.norm": "none", "model.activation": "elu"},
        init="dead_stem",
    ),
    Case(
        "vanishing-nuclei-dead-stem",
        "vanishing_gradients",
        "dsb",
        {"model.norm": "none"},
        init="dead_stem",
        looks_like="no_signal",
    ),
    # no_signal
    Case(
        "no-signal-mismatched",
        "no_signal",
        "synthetic-mismatched",
        fixed_data="synthetic",
        looks_like="overfitting",
    ),
    Case(
        "no-signal-mismatched-dice",
        "no_signal",
        "synthetic-b-mismatched",
        {"loss": "dice"},
        fixed_data="synthetic-b",
        looks_like="foreground_flood",
    ),
    Case("no-signal-nuclei-mismatched", "no_signal", "dsb-mismatched", fixed_data="dsb"),
    # background_only
    Case("background-bce-rare", "background_only", "synthetic-rare", {"loss": "bce", "learning_rate": 1e-2}),
    Case(
        "background-bce-rare-b",
        "background_only",
        "synthetic-b-rare",
        {"loss": "bce", "learning_rate": 1e-2},
        looks_like="unstable",
    ),
    Case(
        "background-bce-rare-seed1",
        "background_only",
        "synthetic-rare",
        {"loss": "bce", "learning_rate": 1e-2, "seed": 1},
    ),
    # constant_floor
    # Faint holes in 80 % foreground: the runs memorise their training masks and score the floor on
    # validation; runs that end predicting less foreground than there is are no_signal's (seen with
    # {"loss": "bce", "seed": 1}).
    Case("floor-bce-dense", "constant_floor", "synthetic-dense", {"loss": "bce"}),
    Case("floor-dense", "constant_floor", "synthetic-dense", looks_like="no_signal"),
    Case("floor-dense-seed1", "constant_floor", "synthetic-dense", {"seed": 1}, looks_like="no_signal"),
    # foreground_flood
    Case(
        "flood-bce-pos-weight-sparse",
        "foreground_flood",
        "synthetic-sparse",
        {"loss": "bce", "pos_weight": 100.0},
        looks_like="background_only",
    ),
    Case(
        "flood-bce-pos-weight-rare",
        "foreground_flood",
        "synthetic-b-rare",
        {"loss": "bce", "pos_weight": 300.0},
    ),
    Case("flood-nuclei-pos-weight", "foreground_flood", "dsb", {"loss": "bce", "pos_weight": 1000.0}),
    # unstable
    Case(
        "unstable-sgd-0.3",
        "unstable",
        "synthetic",
        {"optimizer": "sgd", "learning_rate": 0.3, "batch_size": 8},
        looks_like="overfitting",
    ),
    Case("unstable-sgd-3", "unstable", "synthetic", {"optimizer": "sgd", "learning_rate": 3.0}),
    Case("unstable-nuclei-sgd-1", "unstable", "dsb", {"optimizer": "sgd", "learning_rate": 1.0}),
    # overfitting
    Case(
        "overfit-4-noisy-seed1",
        "overfitting",
        "synthetic-b-noisy-few",
        {"model.base_filters": 16, "batch_size": 2, "epochs": 20, "seed": 1},
    ),
    Case(
        "overfit-4-noisy-b",
        "overfitting",
        "synthetic-b-noisy-few",
        {"model.base_filters": 16, "batch_size": 2, "epochs": 20},
    ),
    Case(
        "overfit-nuclei-4",
        "overfitting",
        "dsb-few",
        {"model.base_filters": 16, "batch_size": 2, "epochs": 20},
    ),
    # underfitting
    Case(
        "underfit-2-filters",
        "underfitting",
        "synthetic",
        {"model.base_filters": 2},
        looks_like="background_only",
    ),
    Case("underfit-1-filter-b", "underfitting", "synthetic-b", {"model.base_filters": 1}),
    Case("underfit-nuclei-1-filter", "underfitting", "dsb", {"model.base_filters": 1}, looks_like="stalled"),
)

# The CI size: one run per cause.
QUICK_CASES: tuple[str, ...] = (
    "healthy-synthetic",
    "diverged-adam-lr10",
    "stalled-adam-1e-6",
    "input-scale-raw-no-norm",
    "vanishing-dead-stem",
    "no-signal-mismatched",
    "background-bce-rare",
    "floor-bce-dense",
    "flood-bce-pos-weight-sparse",
    "unstable-sgd-0.3",
    "overfit-4-noisy-b",
    "underfit-2-filters",
)
