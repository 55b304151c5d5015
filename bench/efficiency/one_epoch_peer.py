"""The "one epoch, keep the top k" peer for the replay tier (Egele et al. 2023, arXiv 2307.15422).

Egele et al. found that training every configuration for one epoch and then training only the best k to
the end matches multi-fidelity methods on common benchmarks. Budgets here are compute, not a fixed number
of configurations, so the peer runs that idea in rounds: each round screens ``screen`` new random
configurations for one epoch, then trains on (from its first epoch, not from scratch) the ``keep`` best
screened configurations not yet trained on, ranked by their epoch-1 Dice over every round so far. With
the defaults (16 screened, 4 kept) a round of a 12-epoch task costs 16 + 4 x 11 = 60 epochs, five full
trials. Proposals are drawn by Optuna's RandomSampler over the task's space, as random search draws them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.samplers import RandomSampler

from search.spec.space import Param, suggest_params

DESCRIPTION = (
    "one epoch, keep the top k (Egele et al. 2023): rounds of 16 random configurations screened for one "
    "epoch, then the 4 best screened so far trained on to the end"
)
SCREEN = 16  # configurations screened for one epoch per round
KEEP = 4  # the best screened configurations trained on per round


@dataclass(frozen=True)
class Ask:
    """One proposal: a key, the parameters, the epochs to train and where to start."""

    key: int  # this trial's number
    params: dict[str, Any]
    max_epochs: int | None  # 1 for a screen; None: to the end
    continues: int | None  # the screened trial it trains on (None: a screen)
    start_epoch: int  # 0 for a screen, 1 for a continuation


@dataclass
class OneEpochSearch:
    """One seed's search; ``ask`` the next trial, ``tell`` a screen's epoch-1 Dice."""

    space: dict[str, Param]
    seed: int
    screen: int = SCREEN
    keep: int = KEEP
    _study: optuna.Study = field(init=False)
    _screened: dict[int, tuple[float, dict[str, Any]]] = field(default_factory=dict)  # key -> (Dice, params)
    _continued: set[int] = field(default_factory=set)
    _queue: list[int] = field(default_factory=list)  # screened keys to train on, best first
    _in_round: int = 0  # screens asked for in this round
    _asked: int = 0

    def __post_init__(self) -> None:
        self._study = optuna.create_study(direction="maximize", sampler=RandomSampler(seed=self.seed))

    def ask(self) -> Ask:
        if not self._queue and self._in_round >= self.screen:
            self._queue = self._best_unpicked(self.keep)
            self._in_round = 0
        self._asked += 1
        key = self._asked
        if self._queue:
            origin = self._queue.pop(0)
            self._continued.add(origin)
            return Ask(key, dict(self._screened[origin][1]), None, origin, 1)
        self._in_round += 1
        params = suggest_params(self._study.ask(), self.space)
        self._screened[key] = (float("nan"), params)  # its Dice arrives with tell
        return Ask(key, params, 1, None, 0)

    def tell(self, key: int, best: float) -> None:
        if key in self._screened and key not in self._continued:
            self._screened[key] = (best, self._screened[key][1])

    def _best_unpicked(self, k: int) -> list[int]:
        """The k best screens with a Dice (finished), not yet trained on, best first (ties: earlier)."""
        told = [
            (dice, key)
            for key, (dice, _) in self._screened.items()
            if key not in self._continued and dice == dice  # NaN: still running
        ]
        return [key for _, key in sorted(told, key=lambda pair: (-pair[0], pair[1]))[:k]]
