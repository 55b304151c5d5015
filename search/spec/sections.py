"""The sections of a study file, each a frozen pydantic model with a comment per field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search.pruning.cross_trial import CrossTrialRule, CrossTrialRuleName
from search.pruning.plateau import PlateauRule
from search.store.retry import OUTAGE_WINDOW_S
from unet.config import VAL_FRACTION


class Section(BaseModel):
    """A section of a study file: unknown keys, NaN and inf are refused; parsed once, then frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SyntheticData(Section):
    """Generated images (``unet.data.synthetic_datasets``): shapes on textured backgrounds."""

    n_train: int = Field(64, ge=1)  # training images
    n_val: int = Field(16, ge=1)  # validation images
    size: int = Field(64, ge=16)  # height and width in pixels
    foreground_fraction: float = Field(0.1, gt=0, le=0.9)  # share of foreground pixels aimed at
    num_classes: int = Field(1, ge=1)  # 1: binary masks; K >= 2: classes 0..K-1
    seed: int = Field(0, ge=0)  # generator seed (train and validation use disjoint streams)
    n_test: int = Field(0, ge=0)  # held-out test images (a third stream), scored once after the search
    contrast: float = Field(0.35, gt=0)  # foreground/background intensity difference (lower is harder)
    noise: float = Field(0.15, ge=0)  # standard deviation of the added gaussian noise


class FolderData(Section):
    """A dataset folder with ``images/`` and ``masks/`` (``unet.data.folder_datasets``)."""

    path: Path  # dataset folder; a relative path is relative to the study file's folder
    val_path: Path | None = None  # explicit validation folder (same layout); null: split off val_fraction
    val_fraction: float = Field(VAL_FRACTION, gt=0, lt=1)  # validation share when val_path is null
    # Held-out test folder (same layout; disjoint from path and val_path): the best trials are scored on
    # it once, after the search (search.execution.testset). null: no test score.
    test_path: Path | None = None
    # Or a held-out test share of path, split off by seed before validation (unet.data.split_with_test)
    # and scored like test_path. 0: none. A share of all images, as val_fraction is.
    test_fraction: float = Field(0.0, ge=0, lt=1)
    # Training patch side in pixels; null: planned from the data (unet.data.plan). Validation and
    # prediction score whole images, tiling those larger than the patch.
    patch_size: int | None = Field(None, ge=8)
    normalization: Literal["zscore", "minmax", "dtype", "none"] = "zscore"  # per-image intensity scaling
    num_classes: int | None = Field(None, ge=1)  # K >= 2: masks of class indices 0..K-1; null or 1: binary
    seed: int = Field(0, ge=0)  # seed of the train/validation/test split and of objective.folds
    # Where flips and 90-degree rotations run: cpu (albumentations, in the loader) or device (on whole
    # batches on the GPU, the same distributions; for when the CPUs cannot keep up: README, GPU).
    geometry_on: Literal["cpu", "device"] = "cpu"


class DataSpec(Section):
    """Which data every trial trains on; in_channels and num_classes of the model come from it."""

    source: Literal["synthetic", "folder"] = "synthetic"  # which of the two sections below is used
    synthetic: SyntheticData = SyntheticData()  # settings of the synthetic source
    folder: FolderData | None = None  # settings of the folder source (required when source is folder)


class Objective(Section):
    """What a trial is scored by; only the validation Dice, maximised, is supported."""

    metric: Literal["val_dice"] = "val_dice"  # the best epoch's validation Dice is the trial's value
    direction: Literal["maximize"] = "maximize"  # higher Dice is better
    # k >= 2: k-fold cross-validation over the training and validation images (not the test ones); the
    # value is the mean of the folds' best-epoch Dice; pruning watches fold 1 (search.execution.folds).
    # 1: one train/validation split.
    folds: int = Field(1, ge=1)


# The compute of a budget that names neither compute, n_trials nor a timeout, in full trials.
DEFAULT_COMPUTE = 20.0


class Budget(Section):
    """How much the study may spend: compute, and optionally a cap on trials and a wall-clock timeout.

    Compute is counted in full-trial equivalents: one is ``max_epochs`` epochs over the training images
    (times ``objective.folds`` under k-fold), so ``compute: 16`` buys what 16 unpruned trials train.
    Every epoch a trial trains spends its share, and the search keeps starting trials while one more full
    trial fits beside what is spent and what the running trials may still train
    (``search.execution.budget``): the compute pruning saves buys more trials. Without any of the three
    limits the budget is ``DEFAULT_COMPUTE`` full trials.
    """

    compute: float | None = Field(None, gt=0)  # full-trial equivalents to spend; null: no compute limit
    n_trials: int | None = Field(None, ge=1)  # at most this many trials (baselines included); null: no cap
    timeout: float | None = Field(None, gt=0)  # seconds after which no new trial starts; null: no limit
    max_epochs: int = Field(10, ge=1)  # epochs of a trial that is not pruned (TrainConfig.epochs)

    @model_validator(mode="before")
    @classmethod
    def _default_compute(cls, data: Any) -> Any:
        if isinstance(data, dict) and all(data.get(k) is None for k in ("compute", "n_trials", "timeout")):
            return {**data, "compute": DEFAULT_COMPUTE}
        return data


# The pruning rules' own defaults are the study file's: one set, defined on the rules.
_PLATEAU = PlateauRule()
_CROSS_TRIAL = CrossTrialRule()


class PlateauPruning(Section):
    """Stops a trial whose own validation loss stopped improving or diverged (``search.pruning.plateau``)."""

    warmup_epochs: int = _PLATEAU.warmup_epochs  # no plateau decision before this many epochs
    patience: int = _PLATEAU.patience  # epochs without enough improvement before it stops
    min_delta: float = _PLATEAU.min_delta  # relative improvement that counts (0.01: 1%)
    # a val loss this many times its first value has diverged
    divergence_factor: float = _PLATEAU.divergence_factor

    @model_validator(mode="after")
    def _in_range(self) -> PlateauPruning:
        self.to_rule()  # the rule checks its ranges (search.pruning.plateau): one check, one message
        return self

    def to_rule(self) -> PlateauRule:
        """The rule these settings describe."""
        return PlateauRule(**self.model_dump())


class CrossTrialPruning(Section):
    """Stops a trial whose validation Dice falls behind the other trials' at the same epoch."""

    rule: CrossTrialRuleName = _CROSS_TRIAL.rule  # Optuna pruner to compare with
    warmup_epochs: int = _CROSS_TRIAL.warmup_epochs  # epochs before a trial may be compared
    min_trials: int = _CROSS_TRIAL.min_trials  # finished trials needed before any comparison
    reduction_factor: int = _CROSS_TRIAL.reduction_factor  # successive_halving: keep 1 in this
    pause: bool = _CROSS_TRIAL.pause  # successive_halving: keep a stopped trial's state, continue it later

    @model_validator(mode="after")
    def _in_range(self) -> CrossTrialPruning:
        self.to_rule()  # the rule checks its ranges (search.pruning.cross_trial): one check, one message
        return self

    def to_rule(self) -> CrossTrialRule:
        """The rule these settings describe."""
        return CrossTrialRule(**self.model_dump())


class Pruning(Section):
    """Both pruning rules; the plateau rule is checked first."""

    plateau: PlateauPruning = PlateauPruning()  # within one trial, on its validation loss
    cross_trial: CrossTrialPruning = CrossTrialPruning()  # across trials, on validation Dice


class Sampler(Section):
    """How Optuna picks the next trial's parameters."""

    # random, not TPE (BENCHMARKS.md, search efficiency): with successive halving stopping most trials at
    # epoch 1, TPE locked onto a near-optimal cluster of the real-image task and often never reached the
    # target there, while random proposals did; on the synthetic task they were about even.
    name: Literal["tpe", "random"] = "random"  # uniform random or TPE (model-based)
    seed: int = Field(0, ge=0)  # sampler seed: the same seed proposes the same parameters
    # tpe: 5, not Optuna's 10: with pruned trials cheap, the model pays off sooner (BENCHMARKS.md).
    n_startup_trials: int = Field(5, ge=0)  # tpe: random trials before the model is used


class Execution(Section):
    """Where and how many trials run at once."""

    concurrency: int = Field(1, ge=1)  # trials running at the same time
    cpus_per_trial: float = Field(1, gt=0)  # CPU cores reserved per trial (Ray resources)
    gpus_per_trial: float = Field(0, ge=0)  # GPUs reserved per trial; fractions share a GPU
    max_retries: int = Field(1, ge=0)  # reruns of a trial whose worker was lost
    # Seconds every store call retries a lost database connection before the run stops with exit status 3
    # (the running trial is then retried on resume); a failover or restart shorter than this costs a retry.
    store_outage_s: float = Field(OUTAGE_WINDOW_S, gt=0)


class Artifacts(Section):
    """Where trials keep their best-epoch checkpoints (``search.checkpoints``); not in the fingerprint."""

    # A folder (relative: to the study file's folder) or s3://bucket[/prefix] (needs boto3). null: the
    # folder <db stem>-artifacts/ beside a SQLite store; none for a server store (name a shared folder).
    path: str | None = None
    keep_top_k: int = Field(3, ge=0)  # the best trials that keep a checkpoint (0: none is kept)


class TestScoring(Section):
    """The held-out test score after the search (needs test data and kept checkpoints)."""

    top_k: int = Field(1, ge=1)  # the best trials scored on the test data (at most artifacts.keep_top_k)
