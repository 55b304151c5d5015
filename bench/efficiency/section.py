"""The search-efficiency section of ``python -m bench``: table, task check, replay tier and live tier."""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from bench.efficiency.analysis import describe_task, speedup, summarize
from bench.efficiency.live import run_live
from bench.efficiency.replay import STRATEGIES, TARGET_SHARE, replay
from bench.efficiency.table import Table, load_or_build
from bench.efficiency.task import QUICK_TASK, HardTask
from search.spec.schema import StudySpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EfficiencySettings:
    """How much of the section to run."""

    task: HardTask  # the task (its table is built once and cached)
    seeds: int  # replay seeds per strategy
    budget_trials: float  # replay budget, in full trials (epochs x train images each)
    live_seeds: int  # live searches per strategy (0: no live tier)
    live_budget_trials: float  # live budget, in full trials
    workers: int = 2  # processes for the table build and the live searches


FULL = EfficiencySettings(HardTask(), seeds=100, budget_trials=60, live_seeds=10, live_budget_trials=12)
QUICK = EfficiencySettings(QUICK_TASK, seeds=3, budget_trials=6, live_seeds=1, live_budget_trials=2)


def run(
    settings: EfficiencySettings, cache_dir: Path, *, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Build or read the table, check the task, replay every strategy, then run the live searches."""
    task = settings.task
    started = time.perf_counter()
    table = load_or_build(
        task,
        cache_dir,
        workers=settings.workers,
        on_row=lambda done, total: (
            say(f"  table: {done}/{total} configurations trained")
            if done % 24 == 0 or done == total
            else None
        ),
    )
    say(f"  table {table.key}: {len(table.rows)} rows ({'cached' if table.cached else 'built'})")
    unit = task.epochs * task.n_train
    spec = StudySpec.from_dict(task.study_dict("bench-replay"), origin="bench replay")
    replay_started = time.perf_counter()
    runs = replay_all(
        table, spec, seeds=settings.seeds, budget=settings.budget_trials * unit, workers=settings.workers
    )
    replay_seconds = time.perf_counter() - replay_started
    summary = summarize(runs, unit=unit)
    say(f"  replay: {len(runs)} runs in {replay_seconds:.0f} s")
    live: dict[str, Any] = {}
    if settings.live_seeds:
        live_started = time.perf_counter()
        live_runs = run_live(
            task,
            target=TARGET_SHARE * table.best_dice,
            budget=settings.live_budget_trials * unit,
            seeds=list(range(settings.live_seeds)),
            workers=settings.workers,
        )
        live = summarize_live(live_runs, unit=unit, replay_summary=summary)
        live["seconds"] = round(time.perf_counter() - live_started, 1)
        say(f"  live: {len(live_runs)} searches in {live['seconds']:.0f} s")
    return {
        "task": task.to_dict(),
        "table": {
            "key": table.key,
            "rows": len(table.rows),
            "cached": table.cached,
            "build_seconds": round(table.build_seconds, 1),
        },
        "task_check": describe_task(table),
        "budget_trials": settings.budget_trials,
        "unit_images": unit,
        "our_defaults": {"pruning": spec.pruning.model_dump(), "sampler": spec.sampler.model_dump()},
        "strategies": {name: description for name, (description, _) in STRATEGIES.items()},
        "replay": summary,
        "replay_seconds": round(replay_seconds, 1),
        "replay_runs": [r.to_dict() for r in runs],
        "live": live,
        "seconds": round(time.perf_counter() - started, 1),
    }


def replay_all(table: Table, spec: StudySpec, *, seeds: int, budget: float, workers: int) -> list[Any]:
    """Every strategy with seeds 0..seeds-1, the strategies spread over ``workers`` processes."""
    jobs = [(table, name, seeds, spec, budget) for name in STRATEGIES]
    if workers <= 1:
        return [run for job in jobs for run in _replay_strategy(job)]
    with multiprocessing.get_context("spawn").Pool(processes=workers) as pool:
        return [run for runs in pool.map(_replay_strategy, jobs, chunksize=1) for run in runs]


def _replay_strategy(job: tuple[Table, str, int, StudySpec, float]) -> list[Any]:
    table, name, seeds, spec, budget = job
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("search").setLevel(logging.WARNING)  # every stop is logged at INFO
    return [replay(table, name, seed, spec=spec, budget=budget) for seed in range(seeds)]


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
