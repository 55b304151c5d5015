"""The replay tier: a search strategy run over a table of trained curves, on a virtual clock.

A replay is an in-memory Optuna study in which "training" a trial means reading, epoch by epoch, the
curve of the table row its parameters snap to (``HardTask.snap``). Two asynchronous workers each run one
trial at a time and ask for the next one as soon as theirs ends, as the service's workers do. An epoch
takes as long on the virtual clock as the images it trains, so compute (epochs x images, summed over the
workers) is ``workers x clock``: never wall time. Reporting and stopping follow each strategy exactly:
the service's own ``TrialStopper`` and sampler for ``ours``, Optuna's stock pruners for the others. A
curve that ``fit`` itself cut short as diverged ends its trial as PRUNED (reason ``diverged``) in every
strategy, as in the service.

A stop can be continued (``Proposal.continues``): our paused trials when the service's promotion picks
them (``ours_pause``), the one-epoch peer's screens it trains on, SMAC's promotions. A continuation reads
its row on from the epoch it stopped at, so the pair trains what one uninterrupted run would. A stop by
rule that no continuation took up when the budget ran out is a kill; a kill of a trial whose full-length
Dice is in the table's top 10 %, made while it was below that, is a false kill. Every epoch's Dice is on
``ReplayRun.trace`` whenever it improves the best so far: the best Dice at any smaller budget.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner, SuccessiveHalvingPruner
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import TrialState

from bench.efficiency.one_epoch_peer import DESCRIPTION as ONE_EPOCH_DESCRIPTION
from bench.efficiency.one_epoch_peer import OneEpochSearch
from bench.efficiency.smac_peer import DESCRIPTION as SMAC_DESCRIPTION
from bench.efficiency.smac_peer import SmacSearch
from bench.efficiency.table import Row, Table
from search.execution.objective import make_stopper
from search.execution.promotion import promote_paused
from search.execution.study import make_sampler
from search.outcome import PAUSED, PAUSED_STATE, continued_after, continued_from, record_stop
from search.pruning.cross_trial import CrossTrialRule
from search.spec.schema import StudySpec
from search.spec.sections import Pruning, Sampler
from search.spec.space import suggest_params

TARGET_SHARE = 0.95  # the target is this share of the table's best Dice
TOP_SHARE = 0.10  # a killed trial whose row is in this top share of the table is a false kill

# Per trial: (epoch, val loss, val Dice) -> stop reason or None. Reports the epoch to Optuna first.
Judge = Callable[[int, float, float], str | None]


@dataclass
class Proposal:
    """One trial a strategy started: its own handle, the parameters, how it judges epochs, its epoch cap.

    A strategy that can continue a stopped trial (our paused trials, the one-epoch screen's picks, SMAC's
    promotions to a higher budget) names it in ``continues``: the stop was then a delay, not a kill.
    """

    handle: Any  # the strategy's trial object (an Optuna trial, a SMAC TrialInfo)
    params: dict[str, Any]
    judge: Judge
    max_epochs: int | None = None  # None: the row's full length; fewer: the strategy asked for fewer
    key: Hashable = None  # what a later proposal's ``continues`` names this trial by (None: not continuable)
    continues: Hashable = None  # the key of the stopped trial this one continues (None: a new trial)
    start_epoch: int = 0  # epochs already trained (a continuation trains on from its origin's last one)


@dataclass
class Setup:
    """One Optuna strategy made ready for one seed: its study, how it proposes and how it stops trials."""

    study: optuna.Study
    spec: StudySpec  # the space (and, for ``ours``, the pruning and sampler settings)
    judge_for: Callable[[optuna.Trial, int], Judge]  # a fresh judge per trial (and its first epoch)
    fresh_sampler: Callable[[int], BaseSampler] | None = None  # the service's sampler-per-ask, by trial count
    promote: CrossTrialRule | None = None  # pausing: continue paused trials as the service does

    def ask(self) -> Proposal:
        if self.fresh_sampler is not None:
            self.study.sampler = self.fresh_sampler(len(self.study.get_trials(deepcopy=False)))
        if self.promote is not None:
            promote_paused(self.study, self.promote)  # the next ask is its continuation, if any
        trial = self.study.ask()
        start = continued_after(trial.user_attrs)
        return Proposal(
            trial,
            suggest_params(trial, self.spec.space),
            self.judge_for(trial, start),
            key=trial.number,
            continues=continued_from(trial.user_attrs),
            start_epoch=start,
        )

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
        # A configuration Hyperband gave a low rung and now promotes (from scratch) was not killed.
        key = ("smac", info.config)
        return Proposal(info, params, _no_reports, max_epochs=epochs, key=key, continues=key)

    def tell(self, proposal: Proposal, state: TrialState, best: float) -> None:
        self.search.tell(proposal.handle, best)  # SMAC gets every result, a diverged run's too

    def close(self) -> None:
        self.search.close()


@dataclass
class OneEpochSetup:
    """The one-epoch-top-k peer for one seed, behind the same ask/tell as ``Setup``."""

    search: OneEpochSearch

    def ask(self) -> Proposal:
        a = self.search.ask()
        return Proposal(
            a.key,
            a.params,
            _no_reports,
            a.max_epochs,
            key=a.key,
            continues=a.continues,
            start_epoch=a.start_epoch,
        )

    def tell(self, proposal: Proposal, state: TrialState, best: float) -> None:
        self.search.tell(proposal.handle, best)

    def close(self) -> None:
        pass


def _no_reports(epoch: int, val_loss: float, dice: float) -> str | None:
    return None


def _one_epoch(spec: StudySpec, seed: int) -> OneEpochSetup:
    return OneEpochSetup(OneEpochSearch(spec.space, seed))


def _smac(spec: StudySpec, seed: int) -> SmacSetup:
    space = {name: dim.model_dump(exclude_none=True) for name, dim in spec.space.items()}
    return SmacSetup(SmacSearch(space, spec.budget.max_epochs, seed))


def _report_only(trial: optuna.Trial, start: int = 0) -> Judge:
    def judge(epoch: int, val_loss: float, dice: float) -> str | None:
        trial.report(dice, epoch)
        return None

    return judge


def _optuna_pruning(trial: optuna.Trial, start: int = 0) -> Judge:
    def judge(epoch: int, val_loss: float, dice: float) -> str | None:
        trial.report(dice, epoch)
        return "underperforming" if trial.should_prune() else None

    return judge


def _stock(sampler: BaseSampler, pruner: BasePruner, spec: StudySpec, seed: int) -> Setup:
    # Named by the seed: HyperbandPruner picks a trial's bracket from a hash of the study's name (an
    # unnamed study gets a random one, and the same seed then replayed differently from run to run).
    name = f"replay-seed-{seed}"
    study = optuna.create_study(study_name=name, direction="maximize", sampler=sampler, pruner=pruner)
    judge: Callable[[optuna.Trial, int], Judge]
    judge = _report_only if isinstance(pruner, NopPruner) else _optuna_pruning
    return Setup(study, spec, judge)


def _ours(spec: StudySpec, seed: int) -> Setup:
    """The service's sampler and stopper; with ``cross_trial.pause`` its pauses and promotions too.

    A paused trial keeps its val losses (the service keeps its whole state); its continuation's stopper
    sees them, as in ``search.execution.objective``, and the replay reads the row on from there.
    """
    spec = _with_seed(spec, seed)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec), pruner=NopPruner())

    def judge_for(trial: optuna.Trial, start: int) -> Judge:
        origin = continued_from(trial.user_attrs)
        losses: list[float] = []
        if origin is not None:
            losses = list(study.trials[origin].user_attrs[REPLAY_LOSSES])[:start]
        stopper = make_stopper(spec, earlier_val_losses=losses)

        def judge(epoch: int, val_loss: float, dice: float) -> str | None:
            losses.append(val_loss)
            decision = stopper.after_epoch(trial, epoch, val_loss, dice)
            if decision is None:
                return None
            record_stop(trial.set_user_attr, decision)
            if decision.reason == PAUSED:
                trial.set_user_attr(PAUSED_STATE, f"replay-{trial.number}")
                trial.set_user_attr(REPLAY_LOSSES, losses)
            return decision.reason

        return judge

    setup = Setup(study, spec, judge_for, fresh_sampler=lambda n: make_sampler(spec, salt=n))
    if spec.pruning.cross_trial.pause:
        setup.promote = spec.pruning.cross_trial.to_rule()
    return setup


REPLAY_LOSSES = "replay_val_losses"  # a paused trial's val losses, for its continuation's plateau rule


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


def _ours_pause(spec: StudySpec, seed: int) -> Setup:
    cross_trial = spec.pruning.cross_trial.model_copy(update={"pause": True})
    pruning = spec.pruning.model_copy(update={"cross_trial": cross_trial})
    return _ours(spec.model_copy(update={"pruning": pruning}), seed)


def _ours_before(spec: StudySpec, seed: int) -> Setup:
    pruning = Pruning.model_validate({k: DEFAULTS_BEFORE[k] for k in ("plateau", "cross_trial")})
    sampler = Sampler.model_validate({**spec.sampler.model_dump(), **DEFAULTS_BEFORE["sampler"]})
    return _ours(spec.model_copy(update={"pruning": pruning, "sampler": sampler}), seed)


# name -> (one-line description, builder(spec, seed)); ``spec`` carries the task's space and our defaults.
STRATEGIES: dict[str, tuple[str, Callable[[StudySpec, int], Setup | SmacSetup | OneEpochSetup]]] = {
    "random": (
        "random search, no pruning",
        lambda spec, seed: _stock(RandomSampler(seed=seed), NopPruner(), spec, seed),
    ),
    "tpe": (
        "Optuna's stock TPESampler, no pruning",
        lambda spec, seed: _stock(TPESampler(seed=seed), NopPruner(), spec, seed),
    ),
    "tpe_median": (
        "stock TPESampler + stock MedianPruner",
        lambda spec, seed: _stock(TPESampler(seed=seed), MedianPruner(), spec, seed),
    ),
    "asha": (
        "random + stock SuccessiveHalvingPruner (asynchronous successive halving)",
        lambda spec, seed: _stock(RandomSampler(seed=seed), SuccessiveHalvingPruner(), spec, seed),
    ),
    "tpe_hyperband": (
        "stock TPESampler + stock HyperbandPruner (Optuna's documented best pairing)",
        lambda spec, seed: _stock(TPESampler(seed=seed), HyperbandPruner(), spec, seed),
    ),
    "random_hyperband": (
        "random + stock HyperbandPruner",
        lambda spec, seed: _stock(RandomSampler(seed=seed), HyperbandPruner(), spec, seed),
    ),
    "smac_bohb": (SMAC_DESCRIPTION, _smac),
    "one_epoch_topk": (ONE_EPOCH_DESCRIPTION, _one_epoch),
    "ours": (
        "the service's defaults: make_sampler + TrialStopper (plateau/divergence + cross-trial rule)",
        _ours,
    ),
    "ours_pause": (
        "the service's defaults with pruning.cross_trial.pause: a halving stop is a pause, continued when "
        "the trial ranks at its rung as more trials arrive",
        _ours_pause,
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
    best_dice: float  # best Dice reported at any epoch within the budget (the winner's: search.ranking)
    best_complete: float  # best value of a COMPLETE trial (Optuna's own best_trial) within the budget
    trials: int = 0  # trials started (continuations included)
    complete: int = 0
    pruned: int = 0  # every stopped trial, fit's own divergence stops included
    pruned_by_rule: int = 0  # stopped by the strategy's rule or epoch cap (pauses and screens included)
    continued: int = 0  # stopped by rule, then continued (or promoted) later: a delay, not a kill
    killed: int = 0  # stopped by rule and never continued within the budget
    false_kills: int = 0  # killed while below the top-10 % Dice, though its full Dice is in it
    top_killed: int = 0  # killed with a full-length Dice in the top 10 %, wherever it had got to
    pruned_compute: float = 0.0  # images spent on trials that ended PRUNED
    snap_distance: float = 0.0  # summed over trials: how far each proposal was from the row it ran as
    rows_seen: int = 0  # distinct table rows the strategy trained
    # (images spent, best Dice so far) at every improvement: the best Dice at any smaller budget
    trace: list[tuple[float, float]] = field(default_factory=list)

    def best_at(self, budget: float) -> float:
        """The best Dice reported within ``budget`` images (0 before the first report)."""
        best = 0.0
        for spent, dice in self.trace:
            if spent > budget:
                break
            best = dice
        return best

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Running:
    proposal: Proposal
    row: Row
    epoch: int = 0
    spent: float = 0.0
    best: float = 0.0  # over the whole curve so far (a continuation's origin's epochs included)

    @property
    def last_epoch(self) -> int:
        cap = self.proposal.max_epochs
        return len(self.row.val_dice) if cap is None else min(cap, len(self.row.val_dice))


@dataclass
class _Replay:
    setup: Setup | SmacSetup | OneEpochSetup
    table: Table
    run: ReplayRun
    workers: int
    target: float
    top: float
    running: dict[int, _Running] = field(default_factory=dict)
    events: list[tuple[float, int, int]] = field(default_factory=list)  # (clock, sequence, worker)
    sequence: int = 0
    rows_seen: set[int] = field(default_factory=set)
    stopped: dict[Hashable, _Running] = field(default_factory=dict)  # stopped by rule, continuable: by key

    def start(self, worker: int, clock: float) -> None:
        proposal = self.setup.ask()
        task = self.table.task
        index = task.snap(proposal.params)
        self.rows_seen.add(index)
        self.run.snap_distance += task.snap_distance(proposal.params)
        row = self.table.rows[index]
        if proposal.continues is not None and self.stopped.pop(proposal.continues, None) is not None:
            self.run.continued += 1
        start = min(proposal.start_epoch, len(row.val_dice) - 1)
        done = [d if math.isfinite(d) else 0.0 for d in row.val_dice[:start]]
        self.running[worker] = _Running(proposal, row, epoch=start, best=max(done, default=0.0))
        self.run.trials += 1
        self._schedule(worker, clock + row.train_images[start])

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
        if dice > self.run.best_dice:
            self.run.best_dice = dice
            self.run.trace.append((clock * self.workers, dice))
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
        """Tell the strategy; count a stop by the strategy's own rule (or epoch cap) as pruned, and keep it
        as stopped until a continuation takes it up (then it was a delay) or the budget ends (a kill)."""
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
            key = r.proposal.key if r.proposal.key is not None else object()
            self.stopped[key] = r

    def finish(self) -> None:
        """The budget is spent: every stop by rule that was not continued is a kill."""
        run = self.run
        for r in self.stopped.values():
            run.killed += 1
            if r.row.best_dice >= self.top:
                run.top_killed += 1
                run.false_kills += r.best < self.top
        self.stopped.clear()


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
        state.finish()
    finally:
        state.setup.close()
    run.rows_seen = len(state.rows_seen)
    return run
