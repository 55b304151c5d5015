"""The search space of a study: parameter types, their checks, Optuna suggestions and the training config.

A space maps a setting's name to a parameter: ``learning_rate`` for a ``TrainConfig`` field, ``model.depth``
for a ``ModelConfig`` field. The dotted names are kept as Optuna parameter names, so optuna-dashboard shows
``model.depth`` as it is written in the study file.

The check functions here return the first problem as a message (or None) without the file name; the study
loader (``search.spec``) adds the file and raises ``SpecError``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from unet.config import ModelConfig, TrainConfig
from unet.errors import ConfigError
from unet.registry import look_up

if TYPE_CHECKING:
    import optuna

    from search.spec.schema import StudySpec

# A value Optuna can store for a categorical parameter.
Choice = bool | int | float | str | None

# Settings a study file may not name: the budget sets the epochs, the data sets the model's input and output.
SET_BY_BUDGET = "epochs"
SET_BY_DATA = ("model.in_channels", "model.num_classes")


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatParam(_Param):
    """A real-valued setting drawn from [low, high]."""

    type: Literal["float"]  # the tag that selects this parameter kind in the study file
    low: float  # smallest value (inclusive)
    high: float  # largest value (inclusive); must be > low
    log: bool = False  # draw uniformly in log space (learning rates); needs low > 0
    step: float | None = None  # draw only low + k * step; cannot be combined with log


class IntParam(_Param):
    """An integer setting drawn from [low, high]."""

    type: Literal["int"]  # the tag that selects this parameter kind in the study file
    low: int  # smallest value (inclusive)
    high: int  # largest value (inclusive); must be > low and low + a multiple of step
    log: bool = False  # draw uniformly in log space; needs low >= 1 and step 1
    step: int = 1  # draw only low + k * step


class CategoricalParam(_Param):
    """A setting drawn from a list of values (names such as losses, or numbers such as batch sizes)."""

    type: Literal["categorical"]  # the tag that selects this parameter kind in the study file
    choices: tuple[Choice, ...]  # the values, at least one, no repeats


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def flatten_settings(nested: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model": {"depth": 3}, "loss": "dice"}`` -> ``{"model.depth": 3, "loss": "dice"}``."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if key == "model" and isinstance(value, Mapping):
            flat.update({f"model.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def nest_settings(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of ``flatten_settings``: ``model.*`` names go into a ``model`` dict."""
    nested: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith("model."):
            model[key.removeprefix("model.")] = value
        else:
            nested[key] = value
    if model:
        nested["model"] = model
    return nested


def setting_types() -> dict[str, tuple[type, ...]]:
    """Every settable name (``TrainConfig`` fields and ``model.<field>``) with the Python types it accepts."""
    types = {
        f"model.{name}": typing.get_args(hint) or (hint,)
        for name, hint in typing.get_type_hints(ModelConfig).items()
    }
    for name, hint in typing.get_type_hints(TrainConfig).items():
        if name != "model":
            types[name] = typing.get_args(hint) or (hint,)
    return types


def check_setting_name(name: str, *, where: str) -> str | None:
    """The problem with naming ``name`` in the space or the fixed settings, or None when it may be named.

    Args:
        name: a dotted setting name such as ``learning_rate`` or ``model.depth``.
        where: ``space`` or ``fixed``, for the message.
    """
    if name == SET_BY_BUDGET:
        return f"{where}.epochs cannot be set: budget.max_epochs sets the number of epochs"
    if name in SET_BY_DATA:
        return f"{where}.{name} cannot be set: it comes from the data (image channels, mask classes)"
    settable = {n: None for n in setting_types() if n != SET_BY_BUDGET and n not in SET_BY_DATA}
    try:
        look_up(settable, name, what=f"{where} setting")
    except ConfigError as e:
        return str(e).replace("choose one of", "choose one of the TrainConfig fields or model.<field>:", 1)
    return None


def check_param(name: str, param: FloatParam | IntParam | CategoricalParam) -> str | None:
    """The first problem of one space entry (bounds, log, step, choices, type of the setting), or None."""
    at = f"space.{name}"
    accepted = setting_types()[name]
    if isinstance(param, CategoricalParam):
        return _check_choices(at, param.choices, accepted)
    if isinstance(param, FloatParam) and float not in accepted:
        return f"{at} is {describe_types(accepted)}, not a float: use type {_suggested_type(accepted)}"
    if isinstance(param, IntParam) and not ({int, float} & set(accepted)):
        return f"{at} is {describe_types(accepted)}, not an integer: use type categorical"
    if not math.isfinite(param.low) or not math.isfinite(param.high):
        return f"{at}.low and high must be finite but got low={param.low} high={param.high}"
    if param.low >= param.high:
        return f"{at}.low must be < high but got low={param.low} high={param.high}"
    if param.log and param.low <= 0:
        return f"{at}.low must be > 0 with log: true but got {param.low}: raise low or set log: false"
    if param.step is None:
        return None
    if param.step <= 0:
        return f"{at}.step must be > 0 but got {param.step}"
    if param.log and (isinstance(param, FloatParam) or param.step != 1):
        return f"{at}.step {param.step} cannot be combined with log: true: drop step or set log: false"
    return _check_grid(at, param)


def _check_choices(at: str, choices: tuple[Choice, ...], accepted: tuple[type, ...]) -> str | None:
    if not choices:
        return f"{at}.choices must list at least one value"
    seen: set[tuple[type, Choice]] = set()
    for value in choices:
        if not accepts(accepted, value):
            return f"{at}.choices: {value!r} is not {describe_types(accepted)}"
        if (type(value), value) in seen:
            return f"{at}.choices lists {value!r} twice: list each value once"
        seen.add((type(value), value))
    return None


def _check_grid(at: str, param: FloatParam | IntParam) -> str | None:
    # Optuna silently lowers a high that is off the step grid; a study file should say what it searches.
    assert param.step is not None  # internal: callers checked it
    steps = (param.high - param.low) / param.step
    whole = math.floor(steps + 1e-9)
    if abs(steps - whole) <= 1e-9:
        return None
    below, above = param.low + whole * param.step, param.low + (whole + 1) * param.step
    return (
        f"{at}.high {param.high} is not low {param.low} plus a multiple of step {param.step}: "
        f"use high {below:g} or {above:g}"
    )


def value_problem(param: FloatParam | IntParam | CategoricalParam, value: Any) -> str | None:
    """Why ``value`` is not a value ``param`` can take (e.g. a baseline's), or None when it is."""
    if isinstance(param, CategoricalParam):
        if any(type(value) is type(c) and value == c for c in param.choices):
            return None
        return f"{value!r} is not one of the choices {list(param.choices)}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number but got {value!r}"
    if isinstance(param, IntParam) and not isinstance(value, int):
        return f"must be an integer but got {value!r}"
    if not param.low <= value <= param.high:
        return f"{value!r} is outside the space [{param.low}, {param.high}]"
    if param.step is not None:
        steps = (value - param.low) / param.step
        if abs(steps - round(steps)) > 1e-9:
            return f"{value!r} is not low {param.low} plus a multiple of step {param.step}"
    return None


def accepts(types: tuple[type, ...], value: Any) -> bool:
    """Whether a setting of the given types takes ``value`` (an int is a valid float; a bool is not)."""
    if value is None:
        return type(None) in types
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int):
        return int in types or float in types
    return type(value) in types


def describe_types(types: tuple[type, ...]) -> str:
    """``(float, NoneType)`` -> ``"a number or null"``, for messages."""
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a name", type(None): "null"}
    if float in types:
        types = tuple(t for t in types if t is not int)
    return " or ".join(words.get(t, t.__name__) for t in types)


def _suggested_type(types: tuple[type, ...]) -> str:
    return "int" if int in types else "categorical"


def suggest_params(
    trial: optuna.Trial, space: Mapping[str, FloatParam | IntParam | CategoricalParam]
) -> dict[str, Any]:
    """Ask ``trial`` for one value of every parameter of ``space``, under the space's (dotted) names.

    Returns:
        ``{name: value}`` in the space's order, ready for ``build_config``.
    """
    params: dict[str, Any] = {}
    for name, param in space.items():
        if isinstance(param, FloatParam):
            params[name] = trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
        elif isinstance(param, IntParam):
            params[name] = trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
        else:
            params[name] = trial.suggest_categorical(name, list(param.choices))
    return params


def build_config(
    spec: StudySpec, params: Mapping[str, Any], *, in_channels: int, num_classes: int
) -> TrainConfig:
    """The training config of one trial: the spec's fixed settings, the trial's parameters, the epochs.

    Args:
        spec: the study spec (its ``fixed`` settings and ``budget.max_epochs``).
        params: one value per space parameter, under the dotted names (``suggest_params``' result, a
            baseline, or a stored trial's params).
        in_channels: image channels of the loaded data.
        num_classes: classes of the loaded data (1 for binary).

    Raises:
        ConfigError: ``params`` does not name exactly the space's parameters, or a value is out of range.
    """
    missing = [name for name in spec.space if name not in params]
    extra = [name for name in params if name not in spec.space]
    if missing or extra:
        raise ConfigError(
            f"trial parameters do not match the space of study {spec.name!r}: "
            f"missing {missing}, not in the space {extra}; the study file changed since the trial ran?"
        )
    settings = flatten_settings(spec.fixed) | dict(params)
    settings |= {"model.in_channels": in_channels, "model.num_classes": num_classes}
    settings["epochs"] = spec.budget.max_epochs
    if settings.get("cpus") is None:  # the cores the trial reserved feed num_workers auto
        settings["cpus"] = max(1, math.floor(spec.execution.cpus_per_trial))
    return TrainConfig.from_dict(nest_settings(settings))


def default_settings() -> dict[str, Any]:
    """Every settable name with the ``TrainConfig`` default (for the resolved fixed settings)."""
    flat = flatten_settings(dataclasses.asdict(TrainConfig()))
    for name in (SET_BY_BUDGET, *SET_BY_DATA):
        flat.pop(name)
    return flat
