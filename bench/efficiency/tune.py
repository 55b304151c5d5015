"""Compare variants of our pruning and sampler defaults on the replay table: how the defaults were chosen.

    python -m bench.efficiency.tune [--seeds 100] [--seed0 1000] VARIANT [VARIANT ...]

Each VARIANT is JSON with the study-file sections to change, e.g.
``'{"plateau": {"warmup_epochs": 1, "patience": 2}, "cross_trial": {"warmup_epochs": 6}}'``
(``plateau`` and ``cross_trial`` go under ``pruning``; ``sampler`` is the sampler section); ``{}`` is the
current defaults. Every variant replays ``ours`` over the seeds, against random search and stock TPE +
HyperbandPruner on the same seeds, and prints one line: compute to target, the two speedups with their
intervals, the false-kill rate, the compute on pruned trials and the median best Dice at the budget
(any epoch of any trial, and of COMPLETE trials only, which the service's summary ranks).
Tune on seeds other than the benchmark's (``--seed0 1000``; the benchmark uses 0..N-1) so that the
reported figures are not the ones the defaults were picked on. The table must be in the cache
(``python -m bench --only efficiency`` builds it); ``--data DIR`` tunes on the real-image task of
that folder instead of the synthetic one.
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
from bench.efficiency.folder_task import FolderTask
from bench.efficiency.measure import FULL
from bench.efficiency.replay import replay
from bench.efficiency.table import Table, load_or_build
from bench.efficiency.task import HardTask, Task
from bench.paths import RESULTS
from search.spec.schema import StudySpec

REFERENCES = ("random", "tpe_hyperband")


def variant_spec(task: Task, variant: dict[str, Any]) -> StudySpec:
    """The task's study with a variant's sections merged into the defaults."""
    data = task.study_dict("bench-tune")
    pruning = {k: variant[k] for k in ("plateau", "cross_trial") if k in variant}
    if pruning:
        data["pruning"] = pruning
    if "sampler" in variant:
        data["sampler"] = variant["sampler"]
    return StudySpec.from_dict(data, origin="bench tune variant")


def _replays(job: tuple[Table, StudySpec, str, list[int], float]) -> list[Any]:
    table, spec, strategy, seeds, budget_trials = job
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("search").setLevel(logging.WARNING)
    unit = table.task.epochs * table.task.n_train
    return [replay(table, strategy, s, spec=spec, budget=budget_trials * unit) for s in seeds]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.efficiency.tune", description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", help="JSON: sections to change, e.g. '{}' for the defaults")
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--seed0", type=int, default=1000, help="first seed (the benchmark uses 0..N-1)")
    p.add_argument("--cache", type=Path, default=RESULTS / "cache")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data", type=Path, help="tune on the real-image task of this dataset folder instead")
    args = p.parse_args(argv)
    task: Task = HardTask() if args.data is None else FolderTask(str(args.data))
    budget_trials = FULL.budget_trials if args.data is None else FULL.folder_budget_trials
    table = load_or_build(task, args.cache, workers=args.workers)
    seeds = list(range(args.seed0, args.seed0 + args.seeds))
    specs = [variant_spec(task, json.loads(v)) for v in args.variants]
    jobs = [(table, specs[0], name, seeds, budget_trials) for name in REFERENCES]
    jobs += [(table, spec, "ours", seeds, budget_trials) for spec in specs]
    with multiprocessing.get_context("spawn").Pool(processes=max(1, args.workers)) as pool:
        results = pool.map(_replays, jobs, chunksize=1)
    references, unit = results[0] + results[1], task.epochs * task.n_train
    for text, runs in zip(args.variants, results[2:], strict=True):
        ours = summarize(runs + references, unit=unit, references=REFERENCES)["ours"]
        vs_r, vs_h = ours["speedup"]["random"], ours["speedup"]["tpe_hyperband"]
        print(
            f"{text}: compute to target {ours['compute_to_target_median']} full trials, "
            f"vs random {vs_r['median']} [{vs_r['low']}, {vs_r['high']}], "
            f"vs TPE+Hyperband {vs_h['median']} [{vs_h['low']}, {vs_h['high']}], "
            f"false kills {ours['false_kill_rate']:.1%}, "
            f"compute on pruned {ours['pruned_compute_share']:.0%}, best Dice {ours['best_dice_median']} "
            f"(of a COMPLETE trial: {ours['best_complete_median']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
