"""The flagship: ``python -m search.run --study unet-lr`` as a user runs it, against random search.

For each sampler seed the shipped study runs as a subprocess in a temporary folder, exactly as the
Quickstart has it (its own defaults: backend, pruning, sampler, compute budget), and so does its peer: the
same study file with pruning off (cross-trial rule ``none``, a plateau rule that never fires:
``bench.efficiency.live.RANDOM_SECTIONS``) and the random sampler with the same seed, at the same compute
budget. From each store: the best val Dice by the one ranking rule (``search.ranking``, the summary's),
the compute spent (the epoch table, in full-trial equivalents: ``search.execution.budget``), the trials
and the wall time of the command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.paths import REPO

STUDY = "unet-lr"  # the Quickstart's study
SEEDS = (0, 1, 2, 3, 4)
QUICK_STUDY = "unet-smoke"
QUICK_SEEDS = (0,)
# Quick: the local backend (no Ray start) and 2 full trials' worth, so that a test takes seconds.
QUICK_ARGS = ("--backend", "local", "--compute", "2")
GOAL_DICE = 0.97  # issue 19: the median over 5 seeds
BEFORE_DICE = 0.938  # issue 19: unet-lr as shipped at a1fc836 (one run)
STRATEGIES = ("ours", "random")


def random_study_file(study: str, folder: Path) -> Path:
    """The study file ``study`` with pruning off and the random sampler, written into ``folder``."""
    import yaml

    from bench.efficiency.live import RANDOM_SECTIONS
    from search.spec.files import read_yaml
    from search.spec.schema import load_spec

    source = load_spec(study).source
    assert source is not None  # a loaded file always has one
    raw = read_yaml(source)
    raw["pruning"] = RANDOM_SECTIONS["pruning"]
    raw["sampler"] = {**raw.get("sampler", {}), **RANDOM_SECTIONS["sampler"]}
    path = folder / f"{raw['name']}.yaml"  # the name must match the file's stem
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def run_search(study: str, seed: int, folder: Path, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``study`` (a name or a file) with sampler seed ``seed`` in ``folder`` as a user does; read it.

    The command is ``python -m search.run --study STUDY --seed SEED`` and ``extra``, nothing more: the
    store is the default one in ``folder`` and Ray a local one, as in a fresh shell, whatever this
    process's environment names (``$UNET_SEARCH_STORAGE``, ``$RAY_ADDRESS``).

    Raises:
        RuntimeError: the command failed; the message holds its exit status and last lines.
    """
    from search.run import RAY_ADDRESS_ENV
    from search.store.location import DEFAULT_STORE_FILE, STORAGE_ENV

    url = f"sqlite:///{(folder / DEFAULT_STORE_FILE).resolve()}"
    command = [sys.executable, "-m", "search.run", "--study", study, "--seed", str(seed), *extra]
    env = {k: v for k, v in os.environ.items() if k not in (STORAGE_ENV, RAY_ADDRESS_ENV)}
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        env={**env, "PYTHONPATH": str(REPO)},
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode} in {folder}: {' | '.join(tail)}")
    return {"seed": seed, **read_search(url, study, extra), "wall_s": round(seconds, 1)}


def read_search(url: str, study: str, extra: Sequence[str]) -> dict[str, Any]:
    """Best val Dice (the summary's winner), compute spent and trials of the study in the store at ``url``."""
    import optuna
    from optuna.trial import TrialState

    from search.execution.budget import measure_compute
    from search.ranking import best_trial, trial_score
    from search.spec.schema import load_spec
    from search.store.engine import open_existing_storage
    from search.store.epochs import EpochStore

    spec = load_spec(study)
    compute = (
        float(extra[list(extra).index("--compute") + 1]) if "--compute" in extra else spec.budget.compute
    )
    storage = open_existing_storage(url)
    try:
        loaded = optuna.load_study(study_name=spec.name, storage=storage)
        trials = loaded.get_trials(deepcopy=False)
        spent = measure_compute(loaded, EpochStore(storage.engine), spec, compute=compute)
        winner = best_trial(trials)
        return {
            "best_dice": None if winner is None else round(float(trial_score(winner) or 0.0), 6),
            "winner": None if winner is None else winner.number,
            "compute_full_trials": round(spent.spent_trials, 2),
            "compute_epochs": spent.spent,
            "budget_full_trials": compute,
            "trials": len(trials),
            "complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        }
    finally:
        storage.engine.dispose()


def quartiles(values: Sequence[float]) -> dict[str, float]:
    """Median and quartiles (linear interpolation; one value: itself three times)."""
    import numpy as np

    q1, median, q3 = (float(v) for v in np.percentile(np.asarray(values, dtype=float), [25, 50, 75]))
    return {"q1": round(q1, 6), "median": round(median, 6), "q3": round(q3, 6)}


def run(*, quick: bool, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Both strategies on every seed, one search at a time; figures per seed and per strategy."""
    study, seeds, extra = (QUICK_STUDY, QUICK_SEEDS, QUICK_ARGS) if quick else (STUDY, SEEDS, ())
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in STRATEGIES}
    with tempfile.TemporaryDirectory(prefix="bench-flagship-") as tmp:
        for seed in seeds:
            for strategy in STRATEGIES:
                folder = Path(tmp) / f"{strategy}-seed{seed}"
                folder.mkdir()
                target = study if strategy == "ours" else str(random_study_file(study, folder))
                result = run_search(target, seed, folder, extra)
                runs[strategy].append(result)
                say(
                    f"[flagship] {strategy} seed {seed}: best val Dice {result['best_dice']}, "
                    f"{result['compute_full_trials']} full trials, {result['trials']} trials, "
                    f"{result['wall_s']:.0f} s"
                )
    summary = {
        strategy: {
            "best_dice": quartiles([r["best_dice"] or 0.0 for r in results]),
            "compute_full_trials": quartiles([r["compute_full_trials"] for r in results]),
            "wall_s": quartiles([r["wall_s"] for r in results]),
        }
        for strategy, results in runs.items()
    }
    ours, peer = (summary[s]["best_dice"]["median"] for s in STRATEGIES)
    return {
        "study": study,
        "command": f"python -m search.run --study {study} --seed N" + "".join(f" {a}" for a in extra),
        "seeds": list(seeds),
        "runs": runs,
        "summary": summary,
        "goal_dice": GOAL_DICE,
        "before_dice": BEFORE_DICE,
        "goal_median_met": ours >= GOAL_DICE,
        "goal_vs_random_met": ours >= peer,
    }
