"""The replay tier: a search strategy run over a table of trained curves, on a virtual clock.

A replay is an in-memory Optuna study in which "training" a trial means reading, epoch by epoch, the
curve of the table row its parameters snap to (``HardTask.snap``). Two asynchronous workers each run one
trial at a time and ask for the next one as soon as theirs ends, as the service's workers do. An epoch
takes as long on the virtual clock as the images it trains, so compute (epochs x images, summed over the
workers) is ``workers x clock``: never wall time. Reporting and stopping follow each strategy exactly:
the service's own ``TrialStopper`` and sampler for ``ours``, Optuna's stock pruners for the others. A
curve that ``fit`` itself cut short as diverged ends its trial as PRUNED (reason ``diverged``) in every
strategy, as in the service.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner, SuccessiveHalvingPruner
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import TrialState

from bench.efficiency.smac_peer import DESCRIPTION as SMAC_DESCRIPTION
from bench.efficiency.smac_peer import SmacSearch
from bench.efficiency.table import Row, Table
from search.execution.objective import make_stopper
from search.execution.study import make_sampler
from search.spec.schema import StudySpec
from search.spec.sections import Pruning, Sampler
from search.spec.space import suggest_params

TARGET_SHARE = 0.95  # the target is this share of the table's best Dice
TOP_SHARE = 0.10  # a pruned trial whose row is in this top share of the table is a false prune

# Per trial: (epoch, val loss, val Dice) -> stop reason or None. Reports the epoch to Optuna first.
Judge = Callable[[int, float, float], str | None]


@dataclass
class Proposal:
    """One trial a strategy started: its own handle, the parameters, how it judges epochs, its epoch cap."""

    handle: Any  # the strategy's trial object (an Optuna trial, a SMAC TrialInfo)
    params: dict[str, Any]
    judge: Judge
    max_epochs: int | None = None  # None: the row's full length; fewer: the strategy asked for fewer


@dataclass
class Setup:
    """One Optuna strategy made ready for one seed: its study, how it proposes and how it stops trials."""

    study: optuna.Study
    spec: StudySpec  # the space (and, for ``ours``, the pruning and sampler settings)
    judge_for: Callable[[optuna.Trial], Judge]  # a fresh judge per trial
    fresh_sampler: Callable[[int], BaseSampler] | None = None  # the service's sampler-per-ask, by trial count

    def ask(self) -> Proposal:
        if self.fresh_sampler is not None:
            self.study.sampler = self.fresh_sampler(len(self.study.get_trials(deepcopy=False)))
        trial = self.study.ask()
        return Proposal(trial, suggest_params(trial, self.spec.space), self.judge_for(trial))

    def tell(self, proposal: Proposal, state: TrialState, best: float) -> None:
        if state == TrialState.COMPLETE:
            self.study.tell(proposal.handle, best)
        else:
            self.study.tell(proposal.handle, state=TrialState.PRUNED)

    def close(self) -> None:
        pass


@dataclass
class SmacSetup:
    """The SMAC peer for one seed, behind the same ask/tell as ``Setup``."""

    search: SmacSearch

    def ask(self) -> Proposal:
        info, params, epochs = self.search.ask()
        return Proposal(info, params, _no_reports, max_epochs=epochs)

    def tell(self, proposal: Proposal, state: TrialState, best: float) -> None:
        self.search.tell(proposal.handle, best)  # SMAC gets every result, a diverged run's too

    def close(self) -> None:
        self.search.close()


def _no_reports(epoch: int, val_loss: float, dice: float) -> str | None:
    return None


def _smac(spec: StudySpec, seed: int) -> SmacSetup:
    space = {name: dim.model_dump(exclude_none=True) for name, dim in spec.space.items()}
    return SmacSetup(SmacSearch(space, spec.budget.max_epochs, seed))


def _report_only(trial: optuna.Trial) -> Judge:
    def judge(epoch: int, val_loss: float, dice: float) -> str | None:
        trial.report(dice, epoch)
        return None

    return judge


def _optuna_pruning(trial: optuna.Trial) -> Judge:
    def judge(epoch: int, val_loss: float, dice: float) -> str | None:
        trial.report(dice, epoch)
        return "underperforming" if trial.should_prune() else None

    return judge


def _stock(sampler: BaseSampler, pruner: BasePruner, spec: StudySpec) -> Setup:
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    judge: Callable[[optuna.Trial], Judge]
    judge = _report_only if isinstance(pruner, NopPruner) else _optuna_pruning
    return Setup(study, spec, judge)


def _ours(spec: StudySpec, seed: int) -> Setup:
    spec = _with_seed(spec, seed)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec), pruner=NopPruner())

    def judge_for(trial: optuna.Trial) -> Judge:
        stopper = make_stopper(spec)

        def judge(epoch: int, val_loss: float, dice: float) -> str | None:
            decision = stopper.after_epoch(trial, epoch, val_loss, dice)
            return decision.reason if decision is not None else None

        return judge

    return Setup(study, spec, judge_for, fresh_sampler=lambda n: make_sampler(spec, salt=n))


# The service's defaults before the last tuning (BENCHMARKS.md), replayed to show what it changed.
DEFAULTS_BEFORE: dict[str, dict[str, Any]] = {
    "plateau": {"warmup_epochs": 1, "patience": 2, "min_delta": 0.01, "divergence_factor": 5.0},
    "cross_trial": {"rule": "median", "warmup_epochs": 6, "min_trials": 5, "reduction_factor": 3},
    "sampler": {"name": "tpe", "n_startup_trials": 5},
}


def _with_seed(spec: StudySpec, seed: int) -> StudySpec:
    """``spec.with_overrides(seed=seed)`` without validating the whole spec again.

    ``with_overrides`` rebuilds the spec and checks that every configuration of the space can be built (a
    U-Net per check, ~0.5 s), once per seed of every replay; only the sampler's seed differs here.
    """
    return spec.model_copy(update={"sampler": spec.sampler.model_copy(update={"seed": seed})})


def _ours_before(spec: StudySpec, seed: int) -> Setup:
    pruning = Pruning.model_validate({k: DEFAULTS_BEFORE[k] for k in ("plateau", "cross_trial")})
    sampler = Sampler.model_validate({**spec.sampler.model_dump(), **DEFAULTS_BEFORE["sampler"]})
    return _ours(spec.model_copy(update={"pruning": pruning, "sampler": sampler}), seed)


# name -> (one-line description, builder(spec, seed)); ``spec`` carries the task's space and our defaults.
STRATEGIES: dict[str, tuple[str, Callable[[StudySpec, int], Setup | SmacSetup]]] = {
    "random": (
        "random search, no pruning",
        lambda spec, seed: _stock(RandomSampler(seed=seed), NopPruner(), spec),
    ),
    "tpe": (
        "Optuna's stock TPESampler, no pruning",
        lambda spec, seed: _stock(TPESampler(seed=seed), NopPruner(), spec),
    ),
    "tpe_median": (
        "stock TPESampler + stock MedianPruner",
        lambda spec, seed: _stock(TPESampler(seed=seed), MedianPruner(), spec),
    ),
    "asha": (
        "random + stock SuccessiveHalvingPruner (asynchronous successive halving)",
        lambda spec, seed: _stock(RandomSampler(seed=seed), SuccessiveHalvingPruner(), spec),
    ),
    "tpe_hyperband": (
        "stock TPESampler + stock HyperbandPruner (Optuna's documented best pairing)",
        lambda spec, seed: _stock(TPESampler(seed=seed), HyperbandPruner(), spec),
    ),
    "random_hyperband": (
        "random + stock HyperbandPruner",
        lambda spec, seed: _stock(RandomSampler(seed=seed), HyperbandPruner(), spec),
    ),
    "smac_bohb": (SMAC_DESCRIPTION, _smac),
    "ours": (
        "the service's defaults: make_sampler + TrialStopper (plateau/divergence + cross-trial rule)",
        _ours,
    ),
    "ours_before": (
        "the defaults before the last tuning: TPE (5 start-up trials) + plateau (warm-up 1, patience 2) "
        "+ median rule from epoch 7",
        _ours_before,
    ),
}


@dataclass
class ReplayRun:
    """What one strategy achieved with one seed."""

    strategy: str
    seed: int
    budget: float  # images (epochs x images), over all workers
    compute_to_target: float | None  # images spent when a reported Dice first reached the target
    best_dice: float  # best Dice reported at any epoch within the budget
    best_complete: float  # best value of a COMPLETE trial (the service's "best trial") within the budget
    trials: int = 0  # trials started
    complete: int = 0
    pruned: int = 0  # every stopped trial, fit's own divergence stops included
    pruned_by_rule: int = 0  # stopped by the strategy's pruning (not by fit's divergence check)
    false_prunes: int = 0  # pruned by rule while below the top-10 % Dice, though its full Dice is in it
    top_pruned: int = 0  # pruned by rule with a full-length Dice in the top 10 %, wherever it had got to
    pruned_compute: float = 0.0  # images spent on trials that ended PRUNED
    snap_distance: float = 0.0  # summed over trials: how far each proposal was from the row it ran as
    rows_seen: int = 0  # distinct table rows the strategy trained

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Running:
    proposal: Proposal
    row: Row
    epoch: int = 0
    spent: float = 0.0
    best: float = 0.0

    @property
    def last_epoch(self) -> int:
        cap = self.proposal.max_epochs
        return len(self.row.val_dice) if cap is None else min(cap, len(self.row.val_dice))


@dataclass
class _Replay:
    setup: Setup | SmacSetup
    table: Table
    run: ReplayRun
    workers: int
    target: float
    top: float
    running: dict[int, _Running] = field(default_factory=dict)
    events: list[tuple[float, int, int]] = field(default_factory=list)  # (clock, sequence, worker)
    sequence: int = 0
    rows_seen: set[int] = field(default_factory=set)

    def start(self, worker: int, clock: float) -> None:
        proposal = self.setup.ask()
        task = self.table.task
        index = task.snap(proposal.params)
        self.rows_seen.add(index)
        self.run.snap_distance += task.snap_distance(proposal.params)
        row = self.table.rows[index]
        self.running[worker] = _Running(proposal, row)
        self.run.trials += 1
        self._schedule(worker, clock + row.train_images[0])

    def _schedule(self, worker: int, clock: float) -> None:
        self.sequence += 1  # ties go to the worker scheduled first
        heapq.heappush(self.events, (clock, self.sequence, worker))

    def step(self) -> bool:
        """Process the next epoch end; False once the budget is spent."""
        clock, _, worker = heapq.heappop(self.events)
        if clock * self.workers > self.run.budget:
            return False
        r = self.running[worker]
        row, epoch = r.row, r.epoch + 1
        images = row.train_images[epoch - 1]
        r.epoch, r.spent = epoch, r.spent + images
        dice = row.val_dice[epoch - 1]
        dice = dice if math.isfinite(dice) else 0.0
        r.best = max(r.best, dice)
        self.run.best_dice = max(self.run.best_dice, dice)
        if self.run.compute_to_target is None and dice >= self.target:
            self.run.compute_to_target = clock * self.workers
        reason = r.proposal.judge(epoch, row.val_loss[epoch - 1], dice)
        end_of_row = epoch == len(row.val_dice)
        if reason is None and end_of_row and row.stop_reason == "diverged":
            self._end(r, TrialState.PRUNED, by_rule=False)
        elif reason is not None:
            self._end(r, TrialState.PRUNED, by_rule=True)
        elif end_of_row:
            self._end(r, TrialState.COMPLETE, by_rule=False)
        elif epoch == r.last_epoch:  # the strategy asked for fewer epochs (a Hyperband rung)
            self._end(r, TrialState.COMPLETE, by_rule=True)
        else:
            self._schedule(worker, clock + row.train_images[epoch])
            return True
        self.start(worker, clock)
        return True

    def _end(self, r: _Running, state: TrialState, *, by_rule: bool) -> None:
        """Tell the strategy; count a stop by the strategy's own rule (or epoch cap) as pruned."""
        run = self.run
        self.setup.tell(r.proposal, state, r.best)
        if state == TrialState.COMPLETE and not by_rule:
            run.complete += 1
            run.best_complete = max(run.best_complete, r.best)
            return
        run.pruned += 1
        run.pruned_compute += r.spent
        if by_rule:
            run.pruned_by_rule += 1
            if r.row.best_dice >= self.top:
                run.top_pruned += 1
                run.false_prunes += r.best < self.top


def replay(
    table: Table, strategy: str, seed: int, *, spec: StudySpec, budget: float, workers: int = 2
) -> ReplayRun:
    """Run ``strategy`` with ``seed`` over ``table`` until ``budget`` images have been trained.

    Args:
        table: the trained curves.
        strategy: a key of ``STRATEGIES``.
        seed: the sampler's seed.
        spec: the study spec of the task (``HardTask.study_dict``): its space, and our pruning and
            sampler settings for ``ours``.
        budget: compute budget in images (epochs x images, over all workers).
        workers: trials running at the same time.
    """
    _, build = STRATEGIES[strategy]
    run = ReplayRun(strategy, seed, budget, None, 0.0, 0.0)
    state = _Replay(
        build(spec, seed),
        table,
        run,
        workers,
        target=TARGET_SHARE * table.best_dice,
        top=table.top_threshold(TOP_SHARE),
    )
    try:
        for worker in range(workers):
            state.start(worker, 0.0)
        while state.step():
            pass
    finally:
        state.setup.close()
    run.rows_seen = len(state.rows_seen)
    return run
