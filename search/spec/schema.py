"""Study files (``studies/*.yaml``) parsed once into a typed, validated ``StudySpec``.

A study file names the data, the objective, the search space, the fixed training settings, the budget, the
pruning rules, the sampler, baseline configurations to try first and the execution settings (see
``studies/unet-lr.yaml`` for a commented example). Everything is checked when the file is loaded, including
that every categorical choice, every numeric bound and every baseline gives a training config that
``unet.fit.check_config`` accepts, so that a study never fails on its tenth trial for a typo. Every problem is
a one-line ``SpecError`` naming the setting, the bad value and the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from search.spec.checks import first_problem, first_untrainable, resolve_paths, resolve_settings
from search.spec.files import SpecError, describe_validation_error, display_path, read_yaml, study_files
from search.spec.space import Choice, Param, flatten_settings
from unet.errors import ConfigError
from unet.registry import look_up

logger = logging.getLogger(__name__)

STUDIES_DIR = Path(__file__).resolve().parents[2] / "studies"

# Fixed settings that change where and how fast a trial runs, not what it learns: left out of the fingerprint
# so that a study started on one machine can be continued on another.
RUNTIME_SETTINGS = ("device", "num_workers", "channels_last")

__all__ = ["STUDIES_DIR", "SpecError", "StudySpec", "list_studies", "load_spec"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SyntheticData(_Section):
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


class FolderData(_Section):
    """A dataset folder with ``images/`` and ``masks/`` (``unet.data.folder_datasets``)."""

    path: Path  # dataset folder; a relative path is relative to the study file's folder
    val_path: Path | None = None  # explicit validation folder (same layout); null: split off val_fraction
    val_fraction: float = Field(0.2, gt=0, lt=1)  # validation share when val_path is null
    # Held-out test folder (same layout; disjoint from path and val_path): the best trials are scored on
    # it once, after the search (search.execution.testset). null: no test score.
    test_path: Path | None = None
    # Training patch side in pixels; null: planned from the data (unet.data.plan). Validation and
    # prediction score whole images, tiling those larger than the patch.
    patch_size: int | None = Field(None, ge=8)
    normalization: Literal["zscore", "minmax", "dtype", "none"] = "zscore"  # per-image intensity scaling
    num_classes: int | None = Field(None, ge=1)  # K >= 2: masks of class indices 0..K-1; null or 1: binary
    seed: int = Field(0, ge=0)  # seed of the train/validation split


class DataSpec(_Section):
    """Which data every trial trains on; in_channels and num_classes of the model come from it."""

    source: Literal["synthetic", "folder"] = "synthetic"  # which of the two sections below is used
    synthetic: SyntheticData = SyntheticData()  # settings of the synthetic source
    folder: FolderData | None = None  # settings of the folder source (required when source is folder)


class Objective(_Section):
    """What a trial is scored by; only the validation Dice, maximised, is supported."""

    metric: Literal["val_dice"] = "val_dice"  # the best epoch's validation Dice is the trial's value
    direction: Literal["maximize"] = "maximize"  # higher Dice is better


class Budget(_Section):
    """How much the study may spend."""

    n_trials: int = Field(20, ge=1)  # trials to finish (baselines included)
    timeout: float | None = Field(None, gt=0)  # seconds after which no new trial starts; null: no limit
    max_epochs: int = Field(10, ge=1)  # epochs of a trial that is not pruned (TrainConfig.epochs)


class PlateauPruning(_Section):
    """Stops a trial whose own validation loss stopped improving or diverged (``search.pruning``)."""

    # Warm-up 1 and patience 2 (tuned on BENCHMARKS.md's search-efficiency replay): a flat or dead curve
    # stops at epoch 3, not 4 or 5, the largest single gain in compute to target. The best Dice reached is
    # unchanged, but more top trials are stopped after their peak and so end PRUNED, not COMPLETE.
    warmup_epochs: int = Field(1, ge=0)  # no plateau decision before this many epochs
    patience: int = Field(2, ge=1)  # epochs without enough improvement before the trial stops
    min_delta: float = Field(0.01, ge=0, lt=1)  # relative improvement that counts (0.01: 1%)
    divergence_factor: float = Field(5.0, gt=1)  # a val loss this many times its first value has diverged


class CrossTrialPruning(_Section):
    """Stops a trial whose validation Dice falls behind the other trials' at the same epoch."""

    rule: Literal["none", "median", "successive_halving"] = "median"  # Optuna pruner to compare with
    # 6, not 3: late bloomers (Dice near 0 for several epochs, then among the best) were the median rule's
    # false prunes; from epoch 7 on it cuts as much compute in the benchmark, with far fewer of them.
    warmup_epochs: int = Field(6, ge=0)  # epochs before a trial may be compared
    min_trials: int = Field(5, ge=0)  # finished trials needed before any comparison
    reduction_factor: int = Field(3, ge=2)  # successive_halving: keep 1 in this many at each rung


class Pruning(_Section):
    """Both pruning rules; the plateau rule is checked first."""

    plateau: PlateauPruning = PlateauPruning()  # within one trial, on its validation loss
    cross_trial: CrossTrialPruning = CrossTrialPruning()  # across trials, on validation Dice


class Sampler(_Section):
    """How Optuna picks the next trial's parameters."""

    name: Literal["tpe", "random"] = "tpe"  # TPE (model-based) or uniform random
    seed: int = Field(0, ge=0)  # sampler seed: the same seed proposes the same parameters
    # 5, not Optuna's 10: with pruned trials cheap, the model pays off sooner (BENCHMARKS.md).
    n_startup_trials: int = Field(5, ge=0)  # tpe: random trials before the model is used


class Execution(_Section):
    """Where and how many trials run at once."""

    concurrency: int = Field(1, ge=1)  # trials running at the same time
    cpus_per_trial: float = Field(1, gt=0)  # CPU cores reserved per trial (Ray resources)
    gpus_per_trial: float = Field(0, ge=0)  # GPUs reserved per trial; fractions share a GPU
    max_retries: int = Field(1, ge=0)  # reruns of a trial whose worker was lost


class Artifacts(_Section):
    """Where trials keep their best-epoch checkpoints (``search.checkpoints``); not in the fingerprint."""

    # A folder (relative: to the study file's folder) or s3://bucket[/prefix] (needs boto3). null: the
    # folder <db stem>-artifacts/ beside a SQLite store; none for a server store (name a shared folder).
    path: str | None = None
    keep_top_k: int = Field(3, ge=0)  # the best trials that keep a checkpoint (0: none is kept)


class TestScoring(_Section):
    """The held-out test score after the search (needs test data and kept checkpoints)."""

    top_k: int = Field(1, ge=1)  # the best trials scored on the test data (at most artifacts.keep_top_k)


class StudySpec(_Section):
    """One study file, validated and resolved: every default filled in, paths absolute.

    Make one with ``load_spec`` or ``StudySpec.from_dict``: they run every check; the plain constructor
    only checks the structure.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # study name in the store; equals the file's stem
    description: str = ""  # one line shown by list_studies
    data: DataSpec = DataSpec()  # the data every trial trains and validates on
    objective: Objective = Objective()  # what a trial is scored by
    space: dict[str, Param]  # searched settings: TrainConfig fields or model.<ModelConfig field>
    fixed: dict[str, Any] = {}  # the other TrainConfig settings, model settings nested under "model"
    budget: Budget = Budget()  # trials, time and epochs
    pruning: Pruning = Pruning()  # when a trial stops early
    sampler: Sampler = Sampler()  # how parameters are proposed
    baselines: list[dict[str, Choice]] = []  # full parameter sets of the space, tried first
    execution: Execution = Execution()  # concurrency, resources per trial and retries
    artifacts: Artifacts = Artifacts()  # where the top trials keep their checkpoints
    test: TestScoring = TestScoring()  # which trials are scored on the held-out test data
    _source: Path | None = PrivateAttr(None)
    _origin: str = PrivateAttr("study spec")

    @property
    def source(self) -> Path | None:
        """The study file this spec was loaded from (None when built from a dict)."""
        return self._source

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec as JSON-serialisable data, saved with the study (only the data source used)."""
        data = self.model_dump(mode="json")
        source = data["data"]["source"]
        data["data"] = {"source": source, source: data["data"][source]}
        data["source"] = str(self._source) if self._source else None
        return data

    def fingerprint(self) -> str:
        """A hash of what makes results comparable: space, objective, data, fixed settings and max_epochs.

        The budget's trials and timeout, the execution settings, the baselines, the sampler and the
        runtime-only settings (``RUNTIME_SETTINGS``) are left out: changing them continues the same study.
        """
        data = self.to_dict()
        fixed = {k: v for k, v in flatten_settings(data["fixed"]).items() if k not in RUNTIME_SETTINGS}
        # Test-data settings added later leave the fingerprint of studies without test data as it was.
        source = data["data"]["source"]
        for key, unset in (("n_test", 0), ("test_path", None)):
            if data["data"][source].get(key, unset) == unset:
                data["data"][source].pop(key, None)
        parts = {
            "space": data["space"],
            "objective": data["objective"],
            "data": data["data"],
            "fixed": fixed,
            "max_epochs": data["budget"]["max_epochs"],
        }
        blob = json.dumps(parts, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "saved study spec") -> StudySpec:
        """Rebuild a spec from ``to_dict()``'s output (e.g. a stored study's), validating it again.

        Raises:
            SpecError: the data is not a valid spec; ``origin`` names where it came from.
        """
        data = dict(data)
        source = data.pop("source", None)
        return _build(data, origin=origin, base_dir=Path.cwd(), source=Path(source) if source else None)

    def with_overrides(
        self,
        *,
        name: str | None = None,
        data_path: str | Path | None = None,
        n_trials: int | None = None,
        timeout: float | None = None,
        seed: int | None = None,
        patch_size: int | None = None,
    ) -> StudySpec:
        """A copy with the command line's overrides applied and validated again.

        Args:
            name: the study's name in the store (the same file run on other data, under another name).
            data_path: train on this dataset folder instead (relative to the working directory); the file's
                folder settings other than the path are kept.
            n_trials: the budget's number of trials.
            timeout: the budget's timeout in seconds.
            seed: the sampler's seed.
            patch_size: the folder data's patch size (``data.folder.patch_size``).

        Raises:
            SpecError: an override is invalid (e.g. the folder does not exist).
        """
        data = self.to_dict()
        data.pop("source")
        if name is not None:
            data["name"] = name
        if data_path is not None:
            folder = data["data"].get("folder") or {}
            path = str(Path(data_path).expanduser().resolve())
            data["data"] = {"source": "folder", "folder": {**folder, "path": path}}
        if patch_size is not None:
            if "folder" not in data["data"]:
                raise SpecError(
                    f"--patch-size {patch_size} applies to folder data but study {self.name!r} uses "
                    "synthetic images (validated whole): pass --data DIR too, or leave --patch-size out"
                )
            data["data"]["folder"] = {**data["data"]["folder"], "patch_size": patch_size}
        if n_trials is not None:
            data["budget"]["n_trials"] = n_trials
        if timeout is not None:
            data["budget"]["timeout"] = timeout
        if seed is not None:
            data["sampler"]["seed"] = seed
        return _build(data, origin=f"{self._origin} with overrides", base_dir=Path.cwd(), source=self._source)


def list_studies(studies_dir: Path = STUDIES_DIR) -> list[tuple[str, str]]:
    """The studies in ``studies_dir`` as ``(name, description)``, sorted by name.

    Only the descriptions are read; a file that cannot be read is listed with the reason (and logged) so
    that listing never fails on one broken file.
    """
    studies = []
    for name, path in sorted(study_files(studies_dir).items()):
        try:
            raw = read_yaml(path)
        except SpecError as e:
            logger.warning("%s", e)
            studies.append((name, f"(unreadable: {e})"))
            continue
        description = raw.get("description", "") if isinstance(raw, dict) else ""
        studies.append((name, str(description)))
    return studies


def load_spec(name_or_path: str, *, studies_dir: Path = STUDIES_DIR) -> StudySpec:
    """Load and validate a study.

    Args:
        name_or_path: a path to a study file (it ends with .yaml/.yml or contains a "/"), or a study name
            looked up as ``studies_dir/NAME.yaml``.
        studies_dir: where study names are looked up.

    Raises:
        SpecError: the file is missing, unreadable or invalid, or the name is unknown; one line.
    """
    if name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise SpecError(
                f"study file {name_or_path!r} does not exist: give a .yaml file or a study name "
                f"({', '.join(sorted(study_files(studies_dir))) or 'none in ' + str(studies_dir)})"
            )
    else:
        available = study_files(studies_dir)
        if not available:
            raise SpecError(f"unknown study {name_or_path!r}: no study files in {studies_dir}")
        try:
            path = look_up(available, name_or_path, what="study")
        except ConfigError as e:
            raise SpecError(f"{e} ({display_path(studies_dir)})") from e
    raw = read_yaml(path)
    spec = _build(raw, origin=display_path(path), base_dir=path.resolve().parent, source=path.resolve())
    # Names are looked up as file names: a copied file that keeps the old name would write into the old
    # study. (Checked on the file only: ``with_overrides(name=...)`` runs a file under another name.)
    if spec.name != path.stem:
        raise SpecError(
            f"name {spec.name!r} must match the file name {path.stem!r}: "
            f"rename the file or set name: {path.stem} ({display_path(path)})"
        )
    return spec


def _build(raw: Any, *, origin: str, base_dir: Path, source: Path | None) -> StudySpec:
    """Validate raw data into a resolved spec: structure (pydantic), then meaning (``search.spec.checks``)."""
    if not isinstance(raw, dict):
        got = "nothing" if raw is None else type(raw).__name__
        raise SpecError(f"a study must be a mapping of sections (name, space ...) but got {got} ({origin})")
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(f"{describe_validation_error(e, StudySpec)} ({origin})") from e
    spec = resolve_paths(spec, base_dir)
    problem = first_problem(spec) or first_untrainable(spec)
    if problem:
        raise SpecError(f"{problem} ({origin})")
    spec = resolve_settings(spec)
    spec._source = source
    spec._origin = origin
    return spec
