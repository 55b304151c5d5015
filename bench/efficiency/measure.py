"""The search-efficiency measurements: per task (the synthetic one and, with a dataset folder, real
images downscaled and at native resolution) its table, task check and replay tier; then the live tier on
the synthetic task."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import optuna

from bench.efficiency.analysis import describe_task, speedup, summarize
from bench.efficiency.anytime import plot_anytime
from bench.efficiency.folder_task import FolderTask
from bench.efficiency.live import run_live
from bench.efficiency.native_task import NativeFolderTask
from bench.efficiency.replay import STRATEGIES, TARGET_SHARE, replay
from bench.efficiency.table import Table, load_or_build, new_pool, sources_digest
from bench.efficiency.task import QUICK_TASK, HardTask, Task
from search.spec.schema import StudySpec

logger = logging.getLogger(__name__)


SEED_CHUNK = 10  # replay seeds per job, so that a slow strategy's seeds spread over the processes


@dataclass(frozen=True)
class EfficiencySettings:
    """How much of the section to run."""

    task: HardTask  # the synthetic task (its table is built once and cached)
    seeds: int  # replay seeds per strategy
    budget_trials: float  # replay budget, in full trials (epochs x train images each)
    live_seeds: int  # live searches per strategy (0: no live tier)
    live_budget_trials: float  # live budget, in full trials
    workers: int = 2  # processes for the table builds, the replays and the live searches (one pool)
    folder_task: FolderTask | None = None  # the real-image task (None: only the synthetic one)
    folder_budget_trials: float = 40  # its replay budget, in full trials
    native_task: NativeFolderTask | None = None  # the same folder at native resolution (None: not run)
    native_budget_trials: float = 23  # its replay budget: about the 32 px task's share of its rows (40/48)
    # Strategies too slow for every seed (SMAC's forest and acquisition search: ~0.1 s a trial, 10 s a seed).
    seed_caps: dict[str, int] = field(default_factory=lambda: {"smac_bohb": 20})

    def seeds_for(self, strategy: str) -> int:
        return min(self.seeds, self.seed_caps.get(strategy, self.seeds))


FULL = EfficiencySettings(HardTask(), seeds=100, budget_trials=60, live_seeds=10, live_budget_trials=12)
QUICK = EfficiencySettings(
    QUICK_TASK,
    seeds=3,
    budget_trials=6,
    live_seeds=1,
    live_budget_trials=2,
    folder_budget_trials=4,
    native_budget_trials=4,
)


def folder_task(folder: Path, *, quick: bool) -> FolderTask:
    """The real-image task on ``folder``: the full size, or a few seconds' worth for CI."""
    if not quick:
        return FolderTask(str(folder))
    return FolderTask(
        str(folder),
        short_side=24,
        size=16,
        epochs=2,
        n_configs=3,
        depths=(2, 3),
        filters=(2, 4),
        batch_sizes=(8,),
    )


def native_task(folder: Path, *, quick: bool) -> NativeFolderTask:
    """The real-image task at native resolution on ``folder``: the full size, or a few seconds' worth.

    The full size, measured on dsb2018-nuclei (44 + 15 images, 256 x 256 to 1040 x 1388) on a busy 2-core
    CPU, two training processes at once: an epoch (128 px patches, whole-image validation) takes 8 s with
    4 filters, 9 s with 8 and 30 to 34 s with 16 (depth 4), and a trial about 20 s more before its first
    epoch ends (the untrained validation). Over the sample's filters that predicts about 30 min for the
    table's 28 configurations of 6 epochs (32 would take about 33 min, too near the 35 min aimed at).
    """
    if not quick:
        return NativeFolderTask(str(folder))
    return NativeFolderTask(
        str(folder), patch=32, epochs=2, n_configs=3, depths=(2, 3), filters=(2,), batch_sizes=(8,)
    )


def run(
    settings: EfficiencySettings, cache_dir: Path, *, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Replay every strategy on each task's table (built or read), then run the live searches.

    Table builds, replays and live searches share one pool of ``settings.workers`` processes: each start
    imports torch, Optuna and SMAC, seconds apiece on a loaded machine.
    """
    started = time.perf_counter()
    with new_pool(settings.workers) as pool:
        tasks: dict[str, Any] = {
            "synthetic": run_task(settings.task, settings, settings.budget_trials, cache_dir, say, pool)
        }
        real = (
            (settings.folder_task, settings.folder_budget_trials),
            (settings.native_task, settings.native_budget_trials),
        )
        for folder, budget_trials in real:
            if folder is not None:
                tasks[folder.name] = run_task(folder, settings, budget_trials, cache_dir, say, pool)
        synthetic = tasks["synthetic"]
        live: dict[str, Any] = {}
        task = settings.task
        if settings.live_seeds:
            unit = task.epochs * task.n_train
            live_started = time.perf_counter()
            live_runs = run_live(
                task,
                target=synthetic["target_dice"],
                budget=settings.live_budget_trials * unit,
                seeds=list(range(settings.live_seeds)),
                pool=pool,
            )
            live = summarize_live(live_runs, unit=unit, replay_summary=synthetic["replay"])
            live["seconds"] = round(time.perf_counter() - live_started, 1)
            say(f"  live: {len(live_runs)} searches in {live['seconds']:.0f} s")
    return {
        "tasks": tasks,
        "strategies": {name: description for name, (description, _) in STRATEGIES.items()},
        "live": live,
        "seconds": round(time.perf_counter() - started, 1),
    }


def run_task(
    task: Task,
    settings: EfficiencySettings,
    budget_trials: float,
    cache_dir: Path,
    say: Callable[[str], None],
    pool: Pool,
) -> dict[str, Any]:
    """One task: its table, the task check and the replay of every strategy, in ``pool``'s processes."""
    label = getattr(task, "name", "synthetic")
    table = load_or_build(
        task,
        cache_dir,
        on_row=lambda done, total: (
            say(f"  {label} table: {done}/{total} configurations trained")
            if done % 12 == 0 or done == total
            else None
        ),
        pool=pool,
    )
    say(f"  {label} table {table.key}: {len(table.rows)} rows ({'cached' if table.cached else 'built'})")
    unit = task.epochs * task.n_train
    spec = StudySpec.from_dict(task.study_dict("bench-replay"), origin="bench replay")
    replay_started = time.perf_counter()
    seeds = {name: settings.seeds_for(name) for name in STRATEGIES}
    runs = replay_all(table, spec, seeds=seeds, budget=budget_trials * unit, pool=pool)
    replay_seconds = time.perf_counter() - replay_started
    shipped = shipped_budget()
    summary = summarize(runs, unit=unit, shipped=shipped)
    say(f"  {label} replay: {len(runs)} runs in {replay_seconds:.0f} s")
    plot = cache_dir.parent / f"efficiency-anytime-{label}.png"
    plot_anytime(runs, unit=unit, title=f"{label}: best val Dice against compute", path=plot)
    return {
        "task": task.to_dict(),
        "description": task.describe(),
        "table": {
            "key": table.key,
            "rows": len(table.rows),
            "cached": table.cached,
            "build_seconds": round(table.build_seconds, 1),
            "unet_sources": table.sources,
            "unet_sources_now": sources_digest(),
        },
        "task_check": describe_task(table),
        "target_dice": TARGET_SHARE * table.best_dice,
        "budget_trials": budget_trials,
        "shipped_budget_trials": shipped,
        "anytime_plot": plot.name,
        "unit_images": unit,
        "our_defaults": {"pruning": spec.pruning.model_dump(), "sampler": spec.sampler.model_dump()},
        "replay": summary,
        "replay_seconds": round(replay_seconds, 1),
        "replay_runs": [r.to_dict() for r in runs],
    }


def shipped_budget() -> float:
    """The Quickstart's study's compute budget in full trials (``budget.compute`` of studies/unet-lr)."""
    from bench.flagship.measure import STUDY
    from search.spec.schema import load_spec

    compute = load_spec(STUDY).budget.compute
    if compute is None:
        raise ValueError(f"study {STUDY!r} names no budget.compute: the efficiency section reads it")
    return float(compute)


def replay_all(
    table: Table, spec: StudySpec, *, seeds: dict[str, int], budget: float, pool: Pool
) -> list[Any]:
    """Every strategy with seeds 0..seeds[name]-1, in chunks of seeds spread over ``pool``'s processes."""
    jobs = [
        (table, name, list(range(first, min(first + SEED_CHUNK, n))), spec, budget)
        for name, n in seeds.items()
        for first in range(0, n, SEED_CHUNK)
    ]
    jobs.sort(key=lambda job: job[1] != "smac_bohb")  # the slowest first, so it does not finish last
    return _in_order([run for runs in pool.map(_replay_strategy, jobs, chunksize=1) for run in runs])


def _in_order(runs: list[Any]) -> list[Any]:
    order = list(STRATEGIES)
    return sorted(runs, key=lambda r: (order.index(r.strategy), r.seed))


def _replay_strategy(job: tuple[Table, str, list[int], StudySpec, float]) -> list[Any]:
    table, name, seeds, spec, budget = job
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("search").setLevel(logging.WARNING)  # every stop is logged at INFO
    return [replay(table, name, seed, spec=spec, budget=budget) for seed in seeds]


def summarize_live(runs: list[Any], *, unit: float, replay_summary: dict[str, Any]) -> dict[str, Any]:
    """Per strategy: median compute-to-target (full trials), best Dice; the speedup against random search
    with its bootstrap interval, and whether it falls on the same side of 1 as the replay's."""
    out: dict[str, Any] = {"runs": [r.to_dict() for r in runs], "strategies": {}, "vs_random": {}}
    ctt: dict[str, list[float]] = {}
    for name in dict.fromkeys(r.strategy for r in runs):
        mine = [r for r in runs if r.strategy == name]
        ctt[name] = [
            r.compute_to_target / unit if r.compute_to_target is not None else math.inf for r in mine
        ]
        out["strategies"][name] = {
            "seeds": len(mine),
            "compute_to_target_median": _json(_median(sorted(ctt[name]))),
            "not_reached": sum(r.compute_to_target is None for r in mine),
            "best_dice_median": _median(sorted(r.best_dice for r in mine)),
            "trials_median": _median(sorted(r.trials for r in mine)),
        }
    for name in ctt:
        if name == "random" or "random" not in ctt:
            continue
        live = speedup(ctt["random"], ctt[name])
        replay_ratio = replay_summary.get(name, {}).get("speedup", {}).get("random", {}).get("median")
        replay_ratio = float(replay_ratio) if replay_ratio is not None else math.nan
        # The live tier has few seeds: it confirms or contradicts only where its interval excludes 1.
        low, high = float(live["low"]), float(live["high"])
        if math.isnan(replay_ratio) or replay_ratio == 1 or not (low > 1 or high < 1):
            verdict = "inconclusive"
        else:
            verdict = "agrees" if (low > 1) == (replay_ratio > 1) else "differs"
        out["vs_random"][name] = {"live": live, "replay": _json(replay_ratio), "verdict": verdict}
    return out


def _median(values: list[float]) -> float:
    n = len(values)
    if n == 0:
        return math.nan
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def _json(value: float) -> float | str:
    return round(value, 3) if math.isfinite(value) else str(value)
