"""A BOHB-class peer for the replay tier: SMAC3's ``MultiFidelityFacade`` (Hyperband + random-forest
Bayesian optimisation, SMAC's BOHB), driven through its own ask/tell API.

Set up as SMAC's documentation sets up multi-fidelity runs: the space as a ConfigSpace, epochs as the
budget (``min_budget`` = max epochs / 9, ``max_budget`` = max epochs, so that Hyperband with its default
eta 3 gets three rungs: 1, 4 and 12 epochs of a 12-epoch task), deterministic, the facade's default
intensifier, initial design and surrogate. A trial SMAC asks for with budget ``b`` trains ``round(b)``
epochs from scratch, as SMAC's target functions do, and is told ``1 - best Dice`` of those epochs. In the
replay's accounting a trial SMAC gave fewer than the full epochs counts as stopped by its rule (it is
Hyperband's early stop), so its compute shows under "compute on pruned"; it is a kill only if SMAC never
runs that configuration again at a higher budget (a promotion, trained from scratch, is a delay).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
from ConfigSpace import (
    CategoricalHyperparameter,
    ConfigurationSpace,
    UniformFloatHyperparameter,
    UniformIntegerHyperparameter,
)
from smac import MultiFidelityFacade, Scenario
from smac.model.random_forest import RandomForest
from smac.runhistory.dataclasses import TrialInfo, TrialValue

LEAF_CAP = 2**13  # the surrogate's leaf cap (see _forest): above any replay's number of trials

DESCRIPTION = (
    "SMAC3 MultiFidelityFacade (BOHB-class: Hyperband, eta 3, + random-forest BO), its own ask/tell, "
    "epochs as the budget"
)


def config_space(space: dict[str, Any], seed: int) -> ConfigurationSpace:
    """A study-file space (``search.spec`` types float/int/categorical) as a ConfigSpace."""
    cs = ConfigurationSpace(seed=seed)
    for name, dim in space.items():
        kind = dim["type"]
        if kind == "float":
            hp: Any = UniformFloatHyperparameter(name, dim["low"], dim["high"], log=bool(dim.get("log")))
        elif kind == "int":
            hp = UniformIntegerHyperparameter(name, dim["low"], dim["high"], log=bool(dim.get("log")))
        elif kind == "categorical":
            hp = CategoricalHyperparameter(name, list(dim["choices"]))
        else:
            raise ValueError(f"space dimension {name!r} has type {kind!r}, which the SMAC peer cannot map")
        cs.add(hp)
    return cs


@dataclass
class SmacSearch:
    """One SMAC optimiser for one seed; ``ask`` gives (handle, params, epochs to train)."""

    space: dict[str, Any]
    max_epochs: int
    seed: int
    _tmp: tempfile.TemporaryDirectory = field(init=False, repr=False)
    _smac: MultiFidelityFacade = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-smac-")
        scenario = Scenario(
            config_space(self.space, self.seed),
            deterministic=True,
            n_trials=1_000_000,  # the replay's compute budget ends the search
            min_budget=self.max_epochs / 9,
            max_budget=self.max_epochs,
            seed=self.seed,
            output_directory=Path(self._tmp.name),
        )
        # SMAC's own logging setup is logging.config.dictConfig, which disables every logger that exists
        # in the process (the service's among them, found by a heartbeat test run after this one): keep
        # the process's logging as it is and only quiet SMAC's logger.
        logging.getLogger("smac").setLevel(logging.ERROR)
        self._smac = MultiFidelityFacade(
            scenario,
            target_function=_never_called,
            model=_forest(scenario),
            overwrite=True,
            logging_level=False,
        )
        self._asked = 0

    def ask(self) -> tuple[TrialInfo, dict[str, Any], int]:
        self._asked += 1
        if self._asked >= LEAF_CAP:
            raise RuntimeError(f"the SMAC peer asked {self._asked} trials, more than its forest's leaf cap")
        # One thread: the replay's processes already use every core (the forest's trees are the same).
        with joblib.parallel_config(backend="sequential"):
            info = self._smac.ask()
        params = dict(info.config)
        epochs = self.max_epochs if info.budget is None else max(1, round(info.budget))
        return info, params, min(epochs, self.max_epochs)

    def tell(self, info: TrialInfo, best_dice: float) -> None:
        with joblib.parallel_config(backend="sequential"):
            self._smac.tell(info, TrialValue(cost=1.0 - best_dice), save=False)

    def close(self) -> None:
        self._tmp.cleanup()


def _forest(scenario: Scenario) -> RandomForest:
    """SMAC's own surrogate (``MultiFidelityFacade.get_model``'s settings) with a leaf cap never reached.

    SMAC's forest passes ``max_leaf_nodes=2**20`` to scikit-learn, whose best-first tree builder then
    allocates room for 2**21 nodes per tree: 0.2 s a tree, 2 s a fit, most of a replay's time. A tree has at
    most one leaf per training point, and the forest trains on fewer points than trials asked (each trains
    at least one epoch; ``ask`` checks the count), so a cap of ``LEAF_CAP`` leaves builds the very same
    trees with the same random draws (the builder is best-first either way), only without the allocation:
    a replay gives the same result with and without the cap (checked with a fixed ``PYTHONHASHSEED``;
    SMAC's proposals otherwise vary with the process's string hashing, run to run).
    """
    return RandomForest(
        log_y=True,
        n_trees=10,
        bootstrapping=True,
        ratio_features=1.0,
        min_samples_split=2,
        min_samples_leaf=1,
        max_depth=2**20,
        max_leaf_nodes=LEAF_CAP,
        configspace=scenario.configspace,
        instance_features=scenario.instance_features,
        seed=scenario.seed,
    )


def _never_called(config: Any, seed: int = 0, budget: float = 0.0) -> float:
    raise RuntimeError("the replay drives SMAC through ask/tell; the target function is never run")
