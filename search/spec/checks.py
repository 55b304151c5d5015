"""What a study file means: the checks and resolution run once pydantic has checked its structure.

Each check returns the first problem as a one-line message without the file name (or None); ``load_spec``
adds the file and raises ``SpecError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.spec.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    accepts,
    build_config,
    check_param,
    check_setting_name,
    default_settings,
    describe_types,
    flatten_settings,
    nest_settings,
    setting_types,
    value_problem,
)
from unet.config import TrainConfig
from unet.errors import ConfigError
from unet.registry import look_up

if TYPE_CHECKING:
    from search.spec.schema import StudySpec


def resolve_paths(spec: StudySpec, base_dir: Path) -> StudySpec:
    """Make the data folder and artifact paths absolute (relative ones are relative to ``base_dir``)."""
    artifacts = spec.artifacts.path
    if artifacts is not None and "://" not in artifacts:
        resolved = spec.artifacts.model_copy(update={"path": str((base_dir / artifacts).resolve())})
        spec = spec.model_copy(update={"artifacts": resolved})
    folder = spec.data.folder
    if folder is None:
        return spec
    paths = {"path": (base_dir / folder.path).resolve()}
    if folder.val_path is not None:
        paths["val_path"] = (base_dir / folder.val_path).resolve()
    if folder.test_path is not None:
        paths["test_path"] = (base_dir / folder.test_path).resolve()
    data = spec.data.model_copy(update={"folder": folder.model_copy(update=paths)})
    return spec.model_copy(update={"data": data})


def resolve_settings(spec: StudySpec) -> StudySpec:
    """Fill the fixed settings with every TrainConfig default and put baselines in the space's order."""
    fixed = {k: v for k, v in default_settings().items() if k not in spec.space}
    fixed |= flatten_settings(spec.fixed)
    baselines = [
        {name: _as_float(b[name]) if isinstance(p, FloatParam) else b[name] for name, p in spec.space.items()}
        for b in spec.baselines
    ]
    return spec.model_copy(update={"fixed": nest_settings(fixed), "baselines": baselines})


def first_problem(spec: StudySpec) -> str | None:
    """The first problem of the space, the fixed settings, the baselines and the data, or None."""
    if not spec.space:
        return "space must name at least one setting to search"
    for name, param in spec.space.items():
        problem = check_setting_name(name, where="space") or check_param(name, param)
        if problem:
            return problem
    return _fixed_problem(spec) or _baselines_problem(spec) or _data_problem(spec)


def _fixed_problem(spec: StudySpec) -> str | None:
    model = spec.fixed.get("model", {})
    if not isinstance(model, Mapping):
        return f"fixed.model must be a mapping of model settings (depth: 3 ...) but got {model!r}"
    dotted = [k for k in spec.fixed if k.startswith("model.") and k.removeprefix("model.") in model]
    if dotted:
        return f"fixed names {dotted[0]} twice (as {dotted[0]} and under model): keep one"
    types = setting_types()
    for name, value in flatten_settings(spec.fixed).items():
        problem = check_setting_name(name, where="fixed")
        if problem:
            return problem
        if name in spec.space:
            return f"{name} is both searched (space.{name}) and fixed (fixed.{name}): remove one of them"
        if not accepts(types[name], value):
            return f"fixed.{name} must be {describe_types(types[name])} but got {value!r}"
    return None


def _baselines_problem(spec: StudySpec) -> str | None:
    for i, baseline in enumerate(spec.baselines):
        for name in baseline:
            if name not in spec.space:
                try:
                    look_up(spec.space, name, what=f"parameter in baselines[{i}]")
                except ConfigError as e:
                    return f"{e} Baselines name exactly the space parameters."
        missing = [name for name in spec.space if name not in baseline]
        if missing:
            return (
                f"baselines[{i}] is missing {', '.join(missing)}: give a value for every space parameter "
                f"({', '.join(spec.space)})"
            )
        for name, param in spec.space.items():
            problem = value_problem(param, baseline[name])
            if problem:
                return f"baselines[{i}].{name} {problem}"
    return None


def _data_problem(spec: StudySpec) -> str | None:
    folder = spec.data.folder
    if spec.data.source != "folder":
        return _synthetic_folds_problem(spec)
    if folder is None:
        return "data.folder is missing: source folder needs data.folder.path (a folder with images/, masks/)"
    for key in ("path", "val_path", "test_path"):
        path = getattr(folder, key)
        if path is not None and not path.is_dir():
            return f"data.folder.{key} {str(path)!r} is not a folder: give a folder with images/ and masks/"
    if folder.test_path is not None and folder.test_path in (folder.path, folder.val_path):
        return (
            f"data.folder.test_path {str(folder.test_path)!r} is also a training or validation folder: "
            f"held-out test data must be a folder of its own"
        )
    if folder.test_path is not None and folder.test_fraction > 0:
        return (
            f"data.folder.test_path {str(folder.test_path)!r} and data.folder.test_fraction "
            f"{folder.test_fraction:g} both hold out test data: keep one (remove test_path, or set "
            "test_fraction: 0)"
        )
    # Under objective.folds val_fraction does not apply (StudySpec.split_val_fraction): not counted here.
    if (
        folder.val_path is None
        and spec.objective.folds == 1
        and folder.val_fraction + folder.test_fraction >= 1
    ):
        return (
            f"data.folder.val_fraction {folder.val_fraction:g} + test_fraction {folder.test_fraction:g} "
            "must be below 1 (no image would be left to train on): lower one of them"
        )
    if spec.objective.folds > 1 and folder.val_path is not None:
        return (
            f"objective.folds {spec.objective.folds} cuts the images of data.folder.path into folds, but "
            f"data.folder.val_path {str(folder.val_path)!r} is set: remove val_path, or set "
            "objective.folds: 1"
        )
    return None


def _synthetic_folds_problem(spec: StudySpec) -> str | None:
    synthetic, k = spec.data.synthetic, spec.objective.folds
    if k > 1 and synthetic.n_train + synthetic.n_val < k:
        return (
            f"objective.folds {k} needs at least {k} images (one per fold) but data.synthetic has "
            f"n_train + n_val = {synthetic.n_train + synthetic.n_val}: raise n_train or lower objective.folds"
        )
    return None


def first_untrainable(spec: StudySpec) -> str | None:
    """The first setting that ``unet.fit.check_config`` rejects: fixed settings with a reference parameter
    set (the first baseline, else each parameter's first value), then each categorical choice and numeric
    bound in turn, then the other baselines. Pairs of searched values are not combined exhaustively;
    ``fit()`` checks every trial's config again before training.
    """
    # Imported here: it pulls in torch, which listing or reading study files does not need.
    from unet.fit import check_config

    if spec.baselines:
        reference, label = dict(spec.baselines[0]), "fixed settings with baselines[0]"
    else:
        reference = {name: _candidates(p)[0][1] for name, p in spec.space.items()}
        label = "fixed settings with the first value of each space parameter"
    attempts: list[tuple[str, dict[str, Any]]] = [(label, reference)]
    for name, param in spec.space.items():
        for what, value in _candidates(param):
            attempts.append((f"space.{name} {what} {value!r}", reference | {name: value}))
    attempts += [(f"baselines[{i}]", dict(b)) for i, b in enumerate(spec.baselines) if i > 0]
    for label, params in attempts:
        problem = _config_problem(spec, params, check_config)
        if problem:
            return f"{label}: {problem}"
    return None


def _as_float(value: object) -> float:
    """A float parameter's baseline value as a float (checked to be a number before this runs)."""
    assert isinstance(value, int | float | str)
    return float(value)


def _candidates(param: FloatParam | IntParam | CategoricalParam) -> list[tuple[str, Any]]:
    if isinstance(param, CategoricalParam):
        return [("choice", value) for value in param.choices]
    return [("low", param.low), ("high", param.high)]


def _config_problem(
    spec: StudySpec, params: dict[str, Any], check: Callable[[TrainConfig], None]
) -> str | None:
    if spec.data.source == "synthetic":
        num_classes = spec.data.synthetic.num_classes
    else:
        # Folder masks are binary unless num_classes says otherwise (unet.data.decode_mask).
        num_classes = (spec.data.folder.num_classes if spec.data.folder else None) or 1
    try:
        # The channel count does not change which settings are valid; 1 stands for any.
        check(build_config(spec, params, in_channels=1, num_classes=num_classes))
    except ConfigError as e:
        return str(e)
    return None
