"""The search space: parameter checks, Optuna suggestions and the mapping to a training config."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from search.spec.schema import StudySpec, load_spec
from search.spec.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    build_config,
    check_param,
    check_setting_name,
    describe_types,
    flatten_settings,
    nest_settings,
    suggest_params,
    value_problem,
)
from unet.config import ModelConfig, TrainConfig
from unet.errors import ConfigError

LR = FloatParam(type="float", low=1e-4, high=1e-1, log=True)
DEPTH = IntParam(type="int", low=2, high=4)
FILTERS = IntParam(type="int", low=8, high=32, step=8)
NORM = CategoricalParam(type="categorical", choices=("batch", "group"))
BATCH = CategoricalParam(type="categorical", choices=(8, 16))


def assert_problem(problem: str | None, expected: str | None) -> None:
    """No problem when none is expected; otherwise a message containing ``expected``."""
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("name", ["unet-lr", "unet-arch", "unet-full", "unet-smoke"])
def test_suggested_values_lie_inside_the_space(name: str) -> None:
    spec = load_spec(name)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        params = suggest_params(trial, spec.space)
        assert list(params) == list(spec.space)
        assert trial.params == params  # the dotted names are Optuna's parameter names
        for param_name, value in params.items():
            assert value_problem(spec.space[param_name], value) is None, (param_name, value)
        study.tell(trial, 0.5)


@pytest.mark.parametrize(
    ("param", "distribution"),
    [
        (LR, FloatDistribution(1e-4, 1e-1, log=True)),
        (FloatParam(type="float", low=0.0, high=1.0, step=0.25), FloatDistribution(0.0, 1.0, step=0.25)),
        (FILTERS, IntDistribution(8, 32, step=8)),
        (IntParam(type="int", low=1, high=64, log=True), IntDistribution(1, 64, log=True)),
        (NORM, CategoricalDistribution(("batch", "group"))),
    ],
)
def test_each_parameter_becomes_the_matching_optuna_distribution(
    param: FloatParam | IntParam | CategoricalParam, distribution: Any
) -> None:
    trial = optuna.create_study().ask()
    suggest_params(trial, {"x": param})
    assert trial.distributions["x"] == distribution


def test_an_enqueued_baseline_is_what_the_trial_suggests() -> None:
    spec = load_spec("unet-full")
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(spec.baselines[1])
    assert suggest_params(study.ask(), spec.space) == spec.baselines[1]


def test_build_config_puts_dotted_names_into_the_model_config() -> None:
    spec = load_spec("unet-arch")
    params = {"model.depth": 4, "model.base_filters": 24, "model.norm": "group"}
    config = build_config(spec, params, in_channels=3, num_classes=1)
    expected = TrainConfig(
        model=ModelConfig(in_channels=3, num_classes=1, depth=4, base_filters=24, norm="group"),
        optimizer="adam",
        learning_rate=1e-3,
        batch_size=16,
        epochs=10,
        scheduler="none",
        loss="dice_bce",
        cpus=1,  # execution.cpus_per_trial: the cores num_workers auto divides
    )
    assert config == expected


@pytest.mark.parametrize(
    ("cpus_per_trial", "fixed", "expected"), [(4, {}, 4), (2.5, {}, 2), (0.5, {}, 1), (4, {"cpus": 2}, 2)]
)
def test_build_config_gives_the_trial_its_reserved_cpus(cpus_per_trial, fixed, expected) -> None:
    spec = load_spec("unet-arch")
    data = spec.to_dict()
    data["execution"]["cpus_per_trial"] = cpus_per_trial
    data["fixed"] |= fixed
    spec = StudySpec.from_dict(data)
    params = {"model.depth": 4, "model.base_filters": 24, "model.norm": "group"}
    assert build_config(spec, params, in_channels=3, num_classes=1).cpus == expected


def test_build_config_combines_fixed_settings_params_and_epochs() -> None:
    spec = load_spec("unet-lr")
    params = {"learning_rate": 0.02, "optimizer": "sgd", "scheduler": "cosine"}
    config = build_config(spec, params, in_channels=1, num_classes=2)
    assert (config.learning_rate, config.optimizer, config.scheduler) == (0.02, "sgd", "cosine")
    assert (config.batch_size, config.loss, config.epochs) == (16, "dice_bce", 10)
    assert config.model == ModelConfig(in_channels=1, num_classes=2, depth=3, base_filters=16, norm="batch")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"learning_rate": 0.01}, "missing ['optimizer', 'scheduler']"),
        (
            {"learning_rate": 0.01, "optimizer": "adam", "scheduler": "none", "model.depth": 2},
            "not in the space ['model.depth']",
        ),
    ],
)
def test_build_config_rejects_params_of_another_space(params: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match="do not match the space of study 'unet-lr'") as caught:
        build_config(load_spec("unet-lr"), params, in_channels=1, num_classes=1)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("learning_rate", None),
        ("model.depth", None),
        ("model.upsampling", None),
        ("epochs", "space.epochs cannot be set: budget.max_epochs"),
        ("model.num_classes", "space.model.num_classes cannot be set: it comes from the data"),
        ("model.in_channels", "space.model.in_channels cannot be set"),
        ("depth", "Did you mean 'model.depth'?"),
        ("lr", "unknown space setting 'lr'"),
        ("model", "unknown space setting 'model'"),
    ],
)
def test_check_setting_name(name: str, expected: str | None) -> None:
    assert_problem(check_setting_name(name, where="space"), expected)


@pytest.mark.parametrize(
    ("name", "param", "expected"),
    [
        ("learning_rate", LR, None),
        ("model.base_filters", FILTERS, None),
        (
            "learning_rate",
            FloatParam(type="float", low=0.0, high=1.0, step=0.3),
            "space.learning_rate.high 1.0 is not low 0.0 plus a multiple of step 0.3: use high 0.9 or 1.2",
        ),
        ("learning_rate", FloatParam(type="float", low=0.1, high=0.1), "low must be < high"),
        (
            "learning_rate",
            FloatParam(type="float", low=0.0, high=1.0, step=0.0),
            "step must be > 0 but got 0.0",
        ),
        (
            "model.depth",
            IntParam(type="int", low=0, high=4, log=True),
            "low must be > 0 with log: true but got 0",
        ),
        ("model.depth", IntParam(type="int", low=1, high=5, log=True, step=2), "step 2 cannot be combined"),
        (
            "batch_size",
            FloatParam(type="float", low=1.0, high=8.0),
            "is an integer, not a float: use type int",
        ),
        ("loss", FloatParam(type="float", low=1.0, high=8.0), "is a name, not a float: use type categorical"),
        ("mixed_precision", IntParam(type="int", low=0, high=1), "is true or false, not an integer"),
        ("pos_weight", CategoricalParam(type="categorical", choices=(None, 2.0, 5)), None),
        (
            "pos_weight",
            CategoricalParam(type="categorical", choices=(None, "x")),
            "'x' is not a number or null",
        ),
        ("loss", CategoricalParam(type="categorical", choices=()), "must list at least one value"),
        ("batch_size", CategoricalParam(type="categorical", choices=(8, True)), "True is not an integer"),
    ],
)
def test_check_param(name: str, param: Any, expected: str | None) -> None:
    assert_problem(check_param(name, param), expected)


@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [
        (LR, 1e-4, None),
        (LR, 0.1, None),
        (LR, 1, "1 is outside the space [0.0001, 0.1]"),
        (LR, "0.01", "must be a number but got '0.01'"),
        (DEPTH, 3, None),
        (DEPTH, 3.0, "must be an integer but got 3.0"),
        (DEPTH, True, "must be a number but got True"),
        (FILTERS, 24, None),
        (FILTERS, 20, "20 is not low 8 plus a multiple of step 8"),
        (BATCH, 16, None),
        (BATCH, 16.0, "16.0 is not one of the choices [8, 16]"),
        (NORM, "layer", "'layer' is not one of the choices ['batch', 'group']"),
    ],
)
def test_value_problem(param: Any, value: Any, expected: str | None) -> None:
    assert_problem(value_problem(param, value), expected)


def test_flatten_and_nest_settings_are_inverse() -> None:
    nested = {"loss": "dice", "model": {"depth": 3, "norm": "group"}}
    flat = {"loss": "dice", "model.depth": 3, "model.norm": "group"}
    assert flatten_settings(nested) == flat
    assert nest_settings(flat) == nested


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ((float, type(None)), "a number or null"),
        ((int,), "an integer"),
        ((int, float), "a number"),
        ((bool, type(None)), "true or false or null"),
        ((str,), "a name"),
    ],
)
def test_describe_types(types: tuple[type, ...], expected: str) -> None:
    assert describe_types(types) == expected
