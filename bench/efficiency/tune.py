"""Compare variants of our pruning and sampler defaults on the replay table: how the defaults were chosen.

    python -m bench.efficiency.tune [--seeds 100] [--seed0 1000] VARIANT [VARIANT ...]

Each VARIANT is JSON with the study-file sections to change, e.g.
``'{"plateau": {"warmup_epochs": 1, "patience": 2}, "cross_trial": {"warmup_epochs": 6}}'``
(``plateau`` and ``cross_trial`` go under ``pruning``; ``sampler`` is the sampler section); ``{}`` is the
current defaults. Every variant replays ``ours`` over the seeds, against random search and stock TPE +
MedianPruner on the same seeds, and prints one line: compute to target, the two speedups with their
intervals, the false-prune rate, the compute on pruned trials and the median best Dice at the budget
(any epoch of any trial, and of COMPLETE trials only, which the service's summary ranks).
Tune on seeds other than the benchmark's (``--seed0 1000``; the benchmark uses 0..N-1) so that the
reported figures are not the ones the defaults were picked on. The table must be in the cache
(``python -m bench --only efficiency`` builds it).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
from pathlib import Path
from typing import Any

import optuna

from bench.efficiency.analysis import summarize
from bench.efficiency.replay import replay
from bench.efficiency.table import Table, load_or_build
from bench.efficiency.task import HardTask
from search.spec.schema import StudySpec

REPO = Path(__file__).resolve().parents[2]
BUDGET_TRIALS = 60


def variant_spec(task: HardTask, variant: dict[str, Any]) -> StudySpec:
    """The task's study with a variant's sections merged into the defaults."""
    data = task.study_dict("bench-tune")
    pruning = {k: variant[k] for k in ("plateau", "cross_trial") if k in variant}
    if pruning:
        data["pruning"] = pruning
    if "sampler" in variant:
        data["sampler"] = variant["sampler"]
    return StudySpec.from_dict(data, origin="bench tune variant")


def _replays(job: tuple[Table, StudySpec, str, list[int]]) -> list[Any]:
    table, spec, strategy, seeds = job
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("search").setLevel(logging.WARNING)
    unit = table.task.epochs * table.task.n_train
    return [replay(table, strategy, s, spec=spec, budget=BUDGET_TRIALS * unit) for s in seeds]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.efficiency.tune", description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", help="JSON: sections to change, e.g. '{}' for the defaults")
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--seed0", type=int, default=1000, help="first seed (the benchmark uses 0..N-1)")
    p.add_argument("--cache", type=Path, default=REPO / "bench" / "results" / "cache")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    task = HardTask()
    table = load_or_build(task, args.cache, workers=args.workers)
    seeds = list(range(args.seed0, args.seed0 + args.seeds))
    specs = [variant_spec(task, json.loads(v)) for v in args.variants]
    jobs = [(table, specs[0], name, seeds) for name in ("random", "tpe_median")]
    jobs += [(table, spec, "ours", seeds) for spec in specs]
    with multiprocessing.get_context("spawn").Pool(processes=max(1, args.workers)) as pool:
        results = pool.map(_replays, jobs, chunksize=1)
    references, unit = results[0] + results[1], task.epochs * task.n_train
    for text, runs in zip(args.variants, results[2:], strict=True):
        ours = summarize(runs + references, unit=unit)["ours"]
        vs_r, vs_m = ours["speedup"]["random"], ours["speedup"]["tpe_median"]
        print(
            f"{text}: compute to target {ours['compute_to_target_median']} full trials, "
            f"vs random {vs_r['median']} [{vs_r['low']}, {vs_r['high']}], "
            f"vs TPE+Median {vs_m['median']} [{vs_m['low']}, {vs_m['high']}], "
            f"false prunes {ours['false_prune_rate']:.1%}, "
            f"compute on pruned {ours['pruned_compute_share']:.0%}, best Dice {ours['best_dice_median']} "
            f"(of a COMPLETE trial: {ours['best_complete_median']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
