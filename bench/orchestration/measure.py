"""Per-trial orchestration overhead of the Ray backend against the local backend (``python -m bench
--only orchestration``, or alone: ``python -m bench.orchestration [--out DIR] [--trials 30] [--quick]``).

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
actor reuse saves.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
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
    ends = [_finished(t) for t in trials]
    first_start = trials[0].datetime_start
    if first_start is None:
        raise RuntimeError(f"{backend}: trial 0 has no start time")
    steady_span = (ends[-1] - ends[0]).total_seconds()
    steady_train = float(train_by_trial.loc[[t.number for t in trials[1:]]].sum())
    return {
        "trials": n_trials,
        "wall_s": round(wall, 3),
        "train_s": round(train, 3),
        "overhead_per_trial_s": round((wall - train) / n_trials, 4),
        "steady_overhead_per_trial_s": round((steady_span - steady_train) / max(n_trials - 1, 1), 4),
        "startup_s": round((first_start - called).total_seconds(), 3),
        "shutdown_s": round((returned - ends[-1]).total_seconds(), 3),
    }


def _finished(trial: optuna.trial.FrozenTrial) -> dt.datetime:
    """When a finished trial ended (every trial of the run must have)."""
    if trial.datetime_complete is None:
        raise RuntimeError(f"trial {trial.number} is {trial.state.name}: the run left it unfinished")
    return trial.datetime_complete


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
