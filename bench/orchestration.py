"""Benchmark: per-trial orchestration overhead of the Ray backend against the local backend.

    python -m bench.orchestration [--out bench/results] [--trials 30] [--quick]

Each backend runs the same trivial study on a fresh SQLite store: ``--trials`` trials of one epoch of a
2-level U-Net on 8 synthetic 16x16 images, one trial at a time, one thread each (what Ray gives a 1-CPU
trial). Everything that is not training is overhead: claiming, the store's writes, heartbeats, telling,
and for Ray the scheduling, the actors and the result round trip. Per backend:

- ``overhead_per_trial_s``: (wall time of the run - training time) / trials, where the training time is
  the sum of the epochs' ``seconds`` in the epoch table. For Ray the wall time includes starting and
  stopping a local Ray, which is also given alone (``startup_s``: from the call to the first trial's
  start; ``shutdown_s``: from the last trial's end to the return).
- ``steady_overhead_per_trial_s``: the same between the first trial's end and the last one's, i.e. once
  the run is going: what every further trial costs. Goal for Ray: <= 0.3 s.

The Ray backend is also measured with ``reuse_actors`` off (a new actor for every trial), which is what
actor reuse saves. Figures go to ``OUT/orchestration.json`` and ``OUT/orchestration.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
import torch

from search.service import open_study_run, run_study
from search.spec.schema import StudySpec, load_spec
from search.store.location import StoreLocation

GOAL_S = 0.3  # steady per-trial overhead of the Ray backend


def tiny_spec(n_trials: int) -> StudySpec:
    """unet-smoke made trivial: 1 epoch on 8 images of 16x16, no baseline, no cross-trial pruning."""
    data = load_spec("unet-smoke").to_dict()
    data.pop("source")
    data["name"] = "bench-orchestration"
    data["data"]["synthetic"].update(n_train=8, n_val=4, size=16)
    data["budget"].update(n_trials=n_trials, max_epochs=1)
    data["pruning"]["cross_trial"]["rule"] = "none"
    data["baselines"] = []
    data["execution"].update(concurrency=1, cpus_per_trial=1, gpus_per_trial=0, max_retries=0)
    return StudySpec.from_dict(data, origin="bench.orchestration")


def measure(backend: str, n_trials: int, directory: Path, *, reuse_actors: bool = True) -> dict[str, Any]:
    """Run the tiny study on ``backend`` ("local" or "ray") and return its timings."""
    spec = tiny_spec(n_trials)
    url = f"sqlite:///{directory / f'{backend}-{reuse_actors}.db'}"
    study_run = open_study_run(spec, StoreLocation.parse(url))
    # Optuna's datetimes are naive local time.
    called = dt.datetime.now()
    started = time.perf_counter()
    if backend == "local":
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            run_study(study_run, backend="local")
        finally:
            torch.set_num_threads(threads)
    else:
        run_study(study_run, backend="ray", reuse_actors=reuse_actors)
    wall = time.perf_counter() - started
    returned = called + dt.timedelta(seconds=wall)
    trials = sorted(study_run.study.get_trials(deepcopy=False), key=lambda t: t.number)
    epochs = study_run.epochs.read_epochs(spec.name)
    study_run.storage.engine.dispose()
    if len(trials) != n_trials or epochs["epoch"].count() != n_trials:
        raise RuntimeError(f"{backend}: {len(trials)} trials and {len(epochs)} epochs, {n_trials} expected")
    train = float(epochs["seconds"].sum())
    train_by_trial = epochs.set_index("trial_number")["seconds"]
    ends = [t.datetime_complete for t in trials]
    steady_span = (ends[-1] - ends[0]).total_seconds()
    steady_train = float(train_by_trial.loc[[t.number for t in trials[1:]]].sum())
    return {
        "trials": n_trials,
        "wall_s": round(wall, 3),
        "train_s": round(train, 3),
        "overhead_per_trial_s": round((wall - train) / n_trials, 4),
        "steady_overhead_per_trial_s": round((steady_span - steady_train) / max(n_trials - 1, 1), 4),
        "startup_s": round((trials[0].datetime_start - called).total_seconds(), 3),
        "shutdown_s": round((returned - ends[-1]).total_seconds(), 3),
    }


def run(*, quick: bool = False, trials: int | None = None) -> dict[str, Any]:
    """Measure the backends; ``quick`` (CI) runs 3 trials each and skips the run without actor reuse."""
    n_trials = trials or (3 if quick else 30)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-orchestration-") as tmp:
        directory = Path(tmp)
        figures: dict[str, Any] = {
            "local": measure("local", n_trials, directory),
            "ray": measure("ray", n_trials, directory),
        }
        if not quick:
            fresh = max(n_trials // 3, 3)  # a new actor per trial is slow: fewer trials say enough
            figures["ray_without_actor_reuse"] = measure("ray", fresh, directory, reuse_actors=False)
    ray_steady = figures["ray"]["steady_overhead_per_trial_s"]
    local_steady = figures["local"]["steady_overhead_per_trial_s"]
    figures["ray_minus_local_steady_s"] = round(ray_steady - local_steady, 4)
    figures["goal_s"] = GOAL_S
    figures["goal_met"] = ray_steady <= GOAL_S
    return figures


def markdown(figures: dict[str, Any], meta: dict[str, Any]) -> str:
    rows = [(name, f) for name, f in figures.items() if isinstance(f, dict)]
    lines = [
        f"# Orchestration overhead per trial ({meta['date']}, {meta['machine']}, {meta['cpus']} CPUs, "
        f"ray {meta['ray']})\n",
        "Trivial 1-epoch trials, one at a time; overhead = wall time minus training time (epoch table).\n",
        "| backend | trials | wall s | train s | overhead / trial s | steady overhead / trial s | "
        "startup s | shutdown s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in rows:
        lines.append(
            f"| {name} | {f['trials']} | {f['wall_s']} | {f['train_s']} | {f['overhead_per_trial_s']} | "
            f"{f['steady_overhead_per_trial_s']} | {f['startup_s']} | {f['shutdown_s']} |"
        )
    met = "met" if figures["goal_met"] else "NOT met"
    lines += [
        "",
        f"Ray steady overhead per trial: **{figures['ray']['steady_overhead_per_trial_s']} s** "
        f"(goal <= {figures['goal_s']} s: {met}); Ray minus local: {figures['ray_minus_local_steady_s']} s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.orchestration", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--trials", type=int, help="trials per backend (default 30; 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="3 trials per backend, no run without actor reuse")
    args = p.parse_args(argv)
    if args.trials is not None and args.trials < 2:
        print(f"error: --trials must be >= 2 but got {args.trials}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    figures = run(quick=args.quick, trials=args.trials)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "ray": metadata.version("ray"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "orchestration.json").write_text(json.dumps({"meta": meta, **figures}, indent=2) + "\n")
    text = markdown(figures, meta)
    (args.out / "orchestration.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
