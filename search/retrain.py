"""Retrain a study's winner: ``python -m search.retrain --study NAME [--storage URL] --out DIR``.

Takes the trial with the best epoch (``pick_trial``; or ``--trial N``), rebuilds its training config from
the study file stored with the study (``search.spec.space.build_config``), loads the study's data and
trains through ``unet.fit``, so that a search ends in a model and ``unet/`` still knows nothing of
studies. Writes, like ``python -m unet.train``: ``DIR/model.pt`` (the best epoch's weights with the config,
the data plan and the normalisation: ``unet.checkpoint``), ``DIR/last.pt`` (the last epoch's),
``DIR/config.yaml`` (the resolved settings), ``DIR/metrics.csv`` (one row per epoch, rewritten after each),
plus ``DIR/source.yaml`` saying which study and trial the configuration came from. ``--out`` is checked
before training (``unet.outputs``: not a file, nothing but these files in an existing folder, writable);
the run is written into a temporary sibling that replaces ``--out`` when it ends (also when it diverged or
was interrupted), so an error part way (a full disk) leaves ``--out`` as it was.

On CPU the retrained run repeats the trial's metrics exactly when it runs with as many threads as the
trial did (float sums split over another number of threads differ in their last digits, and training
amplifies that). A trial records its count (user attribute ``cpu_threads``; a Ray worker has one thread
per reserved CPU) and retrain uses it, whatever ``OMP_NUM_THREADS`` says; ``--threads N`` chooses another.

Exit status: 0 done, 1 the run diverged, 2 bad input (store, study, no trained trial, data), 130
interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from optuna.trial import FrozenTrial, TrialState

from search.execution.data import load_study_data
from search.outcome import cpu_threads, recorded_best_epoch
from search.ranking import best_trial
from search.report.data import load_study_record
from search.spec.schema import SpecError, StudySpec
from search.spec.space import build_config
from search.store.engine import StoreError, open_existing_storage
from search.store.location import StoreLocation, add_storage_option
from unet.atomic import write_atomic
from unet.errors import UNetError
from unet.outputs import check_out, staged, write_failed
from unet.train import train_with_progress

# What a run folder holds: an existing --out may hold these only (it is replaced whole).
OUTPUT_NAMES = frozenset({"model.pt", "last.pt", "config.yaml", "metrics.csv", "source.yaml"})


class RetrainError(ValueError):
    """The study cannot be retrained as asked; the one-line message says why and what to do."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.retrain", description="Retrain the best configuration of a study."
    )
    p.add_argument("--study", required=True, help="the study's name in the store")
    add_storage_option(p)
    p.add_argument("--out", required=True, type=Path, help="run folder for checkpoint, config and metrics")
    p.add_argument("--trial", type=int, help="retrain this trial number instead of the best one")
    p.add_argument("--data", type=Path, help="train on this folder instead of the study's data")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads to train with (default: the trial's own count, so that CPU results repeat it)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def choose_threads(trial: FrozenTrial, requested: int | None) -> tuple[int, str]:
    """The CPU thread count to retrain with, and one line saying why.

    Raises:
        RetrainError: ``requested`` is not a positive count.
    """
    recorded = cpu_threads(trial)
    if requested is not None:
        if requested < 1:
            raise RetrainError(f"--threads must be >= 1 but got {requested}")
        same = "as" if requested == recorded else "not as"
        why = f"--threads, {same} trial #{trial.number} did" if recorded else "--threads"
        return requested, f"{_threads(requested)} ({why})"
    if recorded is None:
        current = torch.get_num_threads()
        return current, (
            f"{_threads(current)} (trial #{trial.number} did not record its count: "
            f"pass --threads N to match it)"
        )
    return int(recorded), (
        f"{_threads(int(recorded))}, as trial #{trial.number} did, so that CPU results repeat it "
        f"(--threads N to change)"
    )


def _threads(n: int) -> str:
    return f"{n} CPU thread{'s' if n != 1 else ''}"


def pick_trial(trials: tuple[FrozenTrial, ...], study: str, number: int | None = None) -> FrozenTrial:
    """The study's winner (:func:`search.ranking.best_trial`, the rule every command shares), or ``number``.

    Raises:
        RetrainError: no trial has trained, or trial ``number`` does not exist or has no parameters.
    """
    if number is not None:
        chosen = next((t for t in trials if t.number == number), None)
        if chosen is None or not chosen.params:
            raise RetrainError(
                f"study {study!r} has no trial #{number} with parameters: choose one of "
                f"{[t.number for t in trials if t.params]} or leave --trial out for the best"
            )
        return chosen
    best = best_trial(trials)
    if best is None:
        raise RetrainError(
            f"study {study!r} has no trained trial yet: run python -m search.run --study {study} first, "
            f"or pick a trial with --trial N"
        )
    return best


def study_spec(spec_data: dict[str, Any], study: str, *, data_path: Path | None) -> StudySpec:
    """The study file stored with the study, with ``--data`` applied.

    Raises:
        RetrainError: the study was not made by unet-search (it has no stored spec).
        SpecError: the stored spec or the folder override is invalid.
    """
    if not spec_data:
        raise RetrainError(
            f"study {study!r} has no stored study file (user attr 'spec'): it was not made by "
            f"python -m search.run, so its configuration cannot be rebuilt"
        )
    spec = StudySpec.from_dict(spec_data, origin=f"study file stored with {study!r}")
    return spec.with_overrides(data_path=data_path) if data_path is not None else spec


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        location = StoreLocation.parse(args.storage)
        record = load_study_record(open_existing_storage(location), args.study)
        trial = pick_trial(record.trials, args.study, args.trial)
        threads, threads_note = choose_threads(trial, args.threads)
        torch.set_num_threads(threads)  # before the data is made: every torch op then runs as the trial's
        spec = study_spec(record.spec, args.study, data_path=args.data)
        data = load_study_data(spec)
        config = build_config(spec, trial.params, in_channels=data.in_channels, num_classes=data.num_classes)
        check_out(args.out, owned=lambda p: p.is_file() and p.name in OUTPUT_NAMES)
    except (StoreError, RetrainError, SpecError, UNetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"Retraining trial #{trial.number} of {args.study} ({_describe(trial)}) on {data.description}",
        file=sys.stderr,
    )
    print(f"Using {threads_note}", file=sys.stderr)
    source = _source(args.study, location.shown, trial, record.spec.get("source"))
    try:
        with staged(args.out) as folder:
            write_atomic(
                folder.path / "config.yaml", lambda f: yaml.safe_dump(config.to_dict(), f, sort_keys=False)
            )
            write_atomic(folder.path / "source.yaml", lambda f: yaml.safe_dump(source, f, sort_keys=False))
            # The staged folder replaces --out when the run ends, also when it diverged or was interrupted
            # (its finished epochs are kept); a training error discards it, leaving --out as it was.
            status, _ = train_with_progress(
                folder.path, config, data.train, data.val, plan=data.plan, quiet=args.quiet, shown=args.out
            )
            if status == 2:
                folder.discard()
            return status
    except OSError as e:
        print(f"error: {write_failed(args.out, e)}", file=sys.stderr)
        return 2


def _source(study: str, storage: str, trial: FrozenTrial, spec_source: Any) -> dict[str, Any]:
    """Where the configuration came from, for ``source.yaml``."""
    return {
        "study": study,
        "storage": storage,
        "study_file": spec_source,
        "trial": trial.number,
        "trial_state": trial.state.name,
        "trial_value": trial.value if trial.state == TrialState.COMPLETE else None,
        "trial_best_epoch": recorded_best_epoch(trial),
        "params": dict(trial.params),
    }


def _describe(trial: FrozenTrial) -> str:
    params = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
    )
    value = f"val Dice {trial.value:.4f}, " if trial.state == TrialState.COMPLETE and trial.value else ""
    return f"{value}{params}"


if __name__ == "__main__":
    raise SystemExit(main())
