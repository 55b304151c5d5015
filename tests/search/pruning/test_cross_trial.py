"""The cross-trial rules: validation, the registry, and that their defaults are the study file's."""

from __future__ import annotations

import optuna
import pytest

from search.pruning.cross_trial import CROSS_TRIAL_RULES, CrossTrialRule
from search.pruning.plateau import PlateauRule
from search.spec.sections import CrossTrialPruning, PlateauPruning
from unet.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "quoted"),
    [
        ({"rule": "medain"}, "Did you mean 'median'?"),
        ({"rule": "hyperband"}, "choose one of median, none, successive_halving"),
        ({"warmup_epochs": -1}, "cross_trial.warmup_epochs must be an integer >= 0 but got -1"),
        ({"min_trials": -2}, "cross_trial.min_trials must be an integer >= 0 but got -2"),
        ({"reduction_factor": 1}, "cross_trial.reduction_factor must be an integer >= 2 but got 1"),
    ],
)
def test_cross_trial_rule_validation(kwargs: dict[str, object], quoted: str) -> None:
    with pytest.raises(ConfigError) as info:
        CrossTrialRule(**kwargs)  # type: ignore[arg-type]
    assert quoted in str(info.value)


def test_registry_builds_pruners() -> None:
    assert sorted(CROSS_TRIAL_RULES) == ["median", "none", "successive_halving"]
    for name in CROSS_TRIAL_RULES:
        assert isinstance(CrossTrialRule(rule=name).build(), optuna.pruners.BasePruner)


def test_rules_and_study_file_share_one_set_of_defaults() -> None:
    assert PlateauPruning().to_rule() == PlateauRule()
    assert CrossTrialPruning().to_rule() == CrossTrialRule()
    assert (PlateauRule().warmup_epochs, PlateauRule().patience) == (1, 2)
    assert CrossTrialRule() == CrossTrialRule(
        rule="successive_halving", warmup_epochs=0, min_trials=0, reduction_factor=3
    )
