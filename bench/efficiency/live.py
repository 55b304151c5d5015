"""The live tier: real searches with the service's own machinery, to confirm the replay's ranking.

Each search is ``search.execution.study.open_study`` + ``search.execution.local.run_local`` on a
temporary SQLite store,
training the task's configurations for real with ``unet.fit`` (one worker, one thread), until a compute
budget in images is spent. The strategies are the ones a study file can express: ``ours`` (the spec
defaults) and ``random`` (random sampler, cross-trial rule ``none`` and a plateau rule that never fires).
Compute-to-target is read from the epochs as they are recorded, against the replay table's target.
Searches run in parallel processes, one per (strategy, seed).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from bench.efficiency.task import HardTask

logger = logging.getLogger(__name__)

# Study-file sections that turn the service's defaults into plain random search without pruning: the
# plateau rule cannot be switched off, so its warm-up is the whole trial and its divergence factor huge.
RANDOM_SECTIONS: dict[str, Any] = {
    "sampler": {"name": "random"},
    "pruning": {
        "plateau": {"warmup_epochs": 10_000, "divergence_factor": 1e12},
        "cross_trial": {"rule": "none"},
    },
}
LIVE_STRATEGIES: dict[str, dict[str, Any]] = {"random": RANDOM_SECTIONS, "ours": {}}


@dataclass(frozen=True)
class LiveRun:
    """What one real search achieved."""

    strategy: str
    seed: int
    budget: float  # images
    compute_to_target: float | None  # images trained when a recorded Dice first reached the target
    best_dice: float  # best Dice of any recorded epoch
    trials: int
    pruned: int
    seconds: float  # wall time of the search (for the record; never used as compute)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Progress:
    """One live search so far: images trained, when the target was first reached, the best Dice."""

    images: float = 0.0
    target_at: float | None = None
    best: float = 0.0


class _BudgetSpent(Exception):
    """Raised from the epoch callback to end the search the moment the budget is spent."""


def run_live(
    task: HardTask,
    *,
    target: float,
    budget: float,
    seeds: list[int],
    pool: Pool,
    strategies: tuple[str, ...] = ("random", "ours"),
) -> list[LiveRun]:
    """Run every (strategy, seed) search in ``pool``'s processes, each until ``budget`` images are trained.

    ``pool``: spawned processes (``bench.efficiency.table.new_pool``), so that a search runs in a process
    of its own at a time, like a real worker, with one torch thread.
    """
    jobs = [(task, strategy, seed, target, budget) for strategy in strategies for seed in seeds]
    return pool.map(_search, jobs, chunksize=1)


def _search(job: tuple[HardTask, str, int, float, float]) -> LiveRun:
    import optuna
    import torch
    from optuna.trial import TrialState

    from search.service import open_study_run, run_study
    from search.spec.schema import StudySpec
    from search.store.location import StoreLocation

    task, strategy, seed, target, budget = job
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for name in ("unet", "search"):
        logging.getLogger(name).setLevel(logging.ERROR)
    data = task.study_dict(f"bench-live-{strategy}-{seed}")
    data |= LIVE_STRATEGIES[strategy]
    # Each strategy draws from its own seed stream: with the same seed, TPE's random start-up trials would
    # be random search's first trials, and the two searches would often share their first hit.
    stream = seed + 1000 * list(LIVE_STRATEGIES).index(strategy)
    data["sampler"] = {**data.get("sampler", {}), "seed": stream}
    # The search ends when the compute budget is spent (on_epoch raises), not on a trial count.
    data["budget"] = {**data.get("budget", {}), "n_trials": 1_000_000}
    spec = StudySpec.from_dict(data, origin=f"bench live {strategy}")
    state = _Progress()

    def on_epoch(trial: optuna.Trial, record: Any) -> None:
        state.images += task.n_train
        state.best = max(state.best, record.val_dice)
        if state.target_at is None and record.val_dice >= target:
            state.target_at = state.images
        if state.images >= budget:
            raise _BudgetSpent

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        study_run = open_study_run(spec, StoreLocation.parse(f"sqlite:///{Path(tmp) / 'live.db'}"))
        try:
            # The trial in progress when the budget runs out stays RUNNING, in a store that is thrown away.
            with contextlib.suppress(_BudgetSpent):
                run_study(study_run, backend="local", on_epoch=on_epoch)
            trials = study_run.study.get_trials(deepcopy=False)
        finally:
            study_run.storage.remove_session()
            study_run.storage.engine.dispose()
    return LiveRun(
        strategy=strategy,
        seed=seed,
        budget=budget,
        compute_to_target=state.target_at,
        best_dice=round(state.best, 4),
        trials=len(trials),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        seconds=round(time.perf_counter() - started, 1),
    )
