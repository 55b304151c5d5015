"""Study files (``studies/*.yaml``) parsed once into a typed, validated ``StudySpec``.

A study file names the data, the objective, the search space, the fixed training settings, the budget, the
pruning rules, the sampler, baseline configurations to try first and the execution settings (see
``studies/unet-lr.yaml`` for a commented example). Everything is checked when the file is loaded, including
that every categorical choice, every numeric bound and every baseline gives a training config that
``unet.fit.check_config`` accepts, so that a study never fails on its tenth trial for a typo. Every problem is
a one-line ``SpecError`` naming the setting, the bad value and the file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationError

from search.spec.checks import first_problem, first_untrainable, resolve_paths, resolve_settings
from search.spec.files import SpecError, describe_validation_error, display_path, read_yaml, study_files
from search.spec.sections import (
    Artifacts,
    Budget,
    DataSpec,
    Execution,
    Objective,
    Pruning,
    Sampler,
    Section,
    TestScoring,
)
from search.spec.space import Choice, Param, flatten_settings
from unet.errors import ConfigError
from unet.registry import look_up

logger = logging.getLogger(__name__)

STUDIES_DIR = Path(__file__).resolve().parents[2] / "studies"

# Fixed settings that change where and how fast a trial runs, not what it learns: left out of the fingerprint
# so that a study started on one machine can be continued on another.
RUNTIME_SETTINGS = ("device", "num_workers", "channels_last", "compile", "cpus")
# The split's validation share under objective.folds (StudySpec.split_val_fraction): one image, pooled back.
POOLED_VAL_FRACTION = 1e-9

__all__ = ["STUDIES_DIR", "Overrides", "SpecError", "StudySpec", "list_studies", "load_spec"]


@dataclass(frozen=True)
class Overrides:
    """The command line's changes to a study file, applied before the one validation of the spec."""

    data_path: str | Path | None = None  # train on this folder (relative to the working directory)
    n_trials: int | None = None  # the budget's cap on trials
    compute: float | None = None  # the budget's compute in full trials
    timeout: float | None = None  # the budget's timeout in seconds
    seed: int | None = None  # the sampler's seed
    patch_size: int | None = None  # the folder data's patch size (data.folder.patch_size)
    name: str | None = None  # the study's name in the store (the same file on other data, another name)

    def apply(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a study's raw data with these overrides in it.

        Raises:
            SpecError: ``patch_size`` for a study on synthetic data (validated whole, no patch).
        """
        data = copy.deepcopy(dict(raw))
        if self.name is not None:
            data["name"] = self.name
        if self.data_path is not None:
            folder = (data.get("data") or {}).get("folder") or {}
            path = str(Path(self.data_path).expanduser().resolve())
            data["data"] = {"source": "folder", "folder": {**folder, "path": path}}
        if self.patch_size is not None:
            section = data.get("data") or {}
            if section.get("source") != "folder":
                raise SpecError(
                    f"--patch-size {self.patch_size} applies to folder data but study {data.get('name')!r} "
                    "uses synthetic images (validated whole): pass --data DIR too, or leave --patch-size out"
                )
            data["data"] = {
                **section,
                "folder": {**(section.get("folder") or {}), "patch_size": self.patch_size},
            }
        for section, key, value in (
            ("budget", "n_trials", self.n_trials),
            ("budget", "compute", self.compute),
            ("budget", "timeout", self.timeout),
            ("sampler", "seed", self.seed),
        ):
            if value is not None:
                data[section] = {**(data.get(section) or {}), key: value}
        return data

    def __bool__(self) -> bool:
        values = (
            self.data_path,
            self.n_trials,
            self.compute,
            self.timeout,
            self.seed,
            self.patch_size,
            self.name,
        )
        return any(v is not None for v in values)


class StudySpec(Section):
    """One study file, validated and resolved: every default filled in, paths absolute.

    Make one with ``load_spec`` or ``StudySpec.from_dict``: they run every check; the plain constructor
    only checks the structure.
    """

    # study name in the store; equals the file's stem. An identifier (never '.', '..' or a path): it names
    # the study's checkpoint folder under artifacts.path.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""  # one line shown by list_studies
    data: DataSpec = DataSpec()  # the data every trial trains and validates on
    objective: Objective = Objective()  # what a trial is scored by
    space: dict[str, Param]  # searched settings: TrainConfig fields or model.<ModelConfig field>
    # the other TrainConfig settings, model settings nested under "model"
    fixed: dict[str, Any] = Field(default_factory=dict)
    budget: Budget = Budget()  # trials, time and epochs
    pruning: Pruning = Pruning()  # when a trial stops early
    sampler: Sampler = Sampler()  # how parameters are proposed
    baselines: list[dict[str, Choice]] = Field(default_factory=list)  # full parameter sets, tried first
    execution: Execution = Execution()  # concurrency, resources per trial and retries
    artifacts: Artifacts = Artifacts()  # where the top trials keep their checkpoints
    test: TestScoring = TestScoring()  # which trials are scored on the held-out test data
    _source: Path | None = PrivateAttr(None)
    _origin: str = PrivateAttr("study spec")

    def split_val_fraction(self) -> float:
        """The validation share the split of a folder source takes.

        ``data.folder.val_fraction``; under ``objective.folds`` (k >= 2) it does not apply, since the
        training and validation images are one pool cut into folds: the split then takes the smallest
        share (one image, pooled back), so that it never counts against ``test_fraction``. The pool, and
        so the folds, and the test part are the same whatever the share (``unet.data.split_with_test``).
        """
        folder = self.data.folder
        assert folder is not None  # asked for folder sources only, which have the section
        return POOLED_VAL_FRACTION if self.objective.folds > 1 else folder.val_fraction

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

        The budget's compute, trials and timeout, the execution settings, the baselines, the sampler and the
        runtime-only settings (``RUNTIME_SETTINGS``) are left out: changing them continues the same study.
        """
        data = self.to_dict()
        fixed = {k: v for k, v in flatten_settings(data["fixed"]).items() if k not in RUNTIME_SETTINGS}
        # Where the flips run (cpu or device) changes the speed, not the augmentation.
        data["data"].get("folder", {}).pop("geometry_on", None)
        # Test-data settings added later leave the fingerprint of studies without test data as it was.
        source = data["data"]["source"]
        for key, unset in (("n_test", 0), ("test_path", None), ("test_fraction", 0.0)):
            if data["data"][source].get(key, unset) == unset:
                data["data"][source].pop(key, None)
        if data["objective"].get("folds") == 1:  # so is cross-validation
            data["objective"].pop("folds")
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
        compute: float | None = None,
        timeout: float | None = None,
        seed: int | None = None,
        patch_size: int | None = None,
    ) -> StudySpec:
        """A copy with the command line's overrides applied and validated again.

        Args:
            name: the study's name in the store (the same file run on other data, under another name).
            data_path: train on this dataset folder instead (relative to the working directory); the file's
                folder settings other than the path are kept.
            n_trials: the budget's cap on trials.
            compute: the budget's compute in full trials.
            timeout: the budget's timeout in seconds.
            seed: the sampler's seed.
            patch_size: the folder data's patch size (``data.folder.patch_size``).

        Raises:
            SpecError: an override is invalid (e.g. the folder does not exist).
        """
        data = self.to_dict()
        data.pop("source")
        data = Overrides(
            data_path=data_path,
            n_trials=n_trials,
            compute=compute,
            timeout=timeout,
            seed=seed,
            patch_size=patch_size,
            name=name,
        ).apply(data)
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


def load_spec(
    name_or_path: str, *, studies_dir: Path = STUDIES_DIR, overrides: Overrides | None = None
) -> StudySpec:
    """Load and validate a study (once, with the overrides in it).

    Args:
        name_or_path: a path to a study file (it ends with .yaml/.yml or contains a "/"), or a study name
            looked up as ``studies_dir/NAME.yaml``.
        studies_dir: where study names are looked up.
        overrides: the command line's changes (``--data``, ``--n-trials`` ...).

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
    origin = display_path(path)
    if overrides and isinstance(raw, dict):
        raw, origin = overrides.apply(raw), f"{origin} with overrides"
    spec = _build(raw, origin=origin, base_dir=path.resolve().parent, source=path.resolve())
    # Names are looked up as file names: a copied file that keeps the old name would write into the old
    # study. (Checked on the file only: ``Overrides(name=...)`` runs a file under another name.)
    if spec.name != path.stem and not (overrides and overrides.name):
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
