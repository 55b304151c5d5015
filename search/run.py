"""Run a hyperparameter search: ``python -m search.run --study NAME|PATH.yaml``.

Exit status: 0 done, 2 bad input (study file, data, storage URL, a stored study that conflicts),
130 interrupted (Ctrl-C or SIGTERM), 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import optuna

from search.execution.data import inspect_study_data
from search.execution.progress import Progress, summary
from search.execution.signals import sigterm_as_interrupt
from search.execution.study import StudyConflictError, count_trials
from search.service import BACKENDS, StudyRun, open_study_run, run_study
from search.spec.schema import Overrides, SpecError, StudySpec, list_studies, load_spec
from search.store.engine import StoreError
from search.store.location import add_storage_option, redact_url, storage_url
from unet.errors import UNetError

# Ray's own variable for the cluster to join, read here only (the backend gets it as an argument).
RAY_ADDRESS_ENV = "RAY_ADDRESS"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.run", description="Search U-Net hyperparameters.")
    p.add_argument("--study", help="a study name from studies/ (see --list) or a path to a .yaml file")
    p.add_argument("--list", action="store_true", help="list the shipped studies and exit")
    add_storage_option(p)
    p.add_argument("--data", type=Path, help="train on this folder (DIR/images, DIR/masks) instead")
    p.add_argument("--n-trials", type=int, help="trials the study should have in total (resuming counts)")
    p.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    p.add_argument("--seed", type=int, help="sampler seed")
    p.add_argument("--backend", choices=BACKENDS, default="ray", help="where trials run (default: ray)")
    p.add_argument(
        "--address",
        default=os.environ.get(RAY_ADDRESS_ENV),
        help=f"Ray cluster to join, e.g. 10.0.0.5:6379 (default: ${RAY_ADDRESS_ENV}, else a local Ray)",
    )
    p.add_argument("--dry-run", action="store_true", help="check the study, data and store, then stop")
    p.add_argument("--verbose", action="store_true", help="log what the service does")
    return p


def resolve(args: argparse.Namespace) -> tuple[StudySpec, str]:
    """The spec with the command-line overrides applied, and the storage URL."""
    if args.n_trials is not None and args.n_trials < 1:
        raise SpecError(f"--n-trials must be >= 1 but got {args.n_trials}")
    if args.timeout is not None and not args.timeout > 0:
        raise SpecError(f"--timeout must be > 0 seconds but got {args.timeout}")
    overrides = Overrides(data_path=args.data, n_trials=args.n_trials, timeout=args.timeout, seed=args.seed)
    spec = load_spec(args.study, overrides=overrides)
    url = storage_url(args.storage)
    return spec, url


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.list:
        for name, description in list_studies():
            print(f"{name:<14} {description}")
        return 0
    if not args.study:
        print(
            "error: --study NAME|PATH.yaml is required (python -m search.run --list shows the studies)",
            file=sys.stderr,
        )
        return 2
    try:
        spec, url = resolve(args)
        shown = redact_url(url)
        if args.dry_run:
            return dry_run(spec, shown)
        run = open_study_run(spec, url)
    except (SpecError, StoreError, StudyConflictError, UNetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    n_trials, timeout = spec.budget.n_trials, spec.budget.timeout
    before = count_trials(run.study)
    print(
        f"Study {spec.name} ({spec.source or 'spec'}): {'created' if run.created else 'resumed'} in {shown}",
        file=sys.stderr,
    )
    print(
        f"Data: {run.data.description}; backend {args.backend}; "
        f"{before.finished} of {n_trials} trials already finished",
        file=sys.stderr,
    )
    progress = Progress(run.study, n_trials=n_trials, timeout=timeout)
    try:
        with sigterm_as_interrupt():
            status = run_trials(args, run, progress)
    except KeyboardInterrupt:
        running = "the running trial is" if args.backend == "local" else "running trials are"
        print(f"\ninterrupted: {running} marked interrupted and will run again on resume", file=sys.stderr)
        status = 130
    print(summary(run.study, n_trials=n_trials, storage_display=shown))
    return status


def run_trials(args: argparse.Namespace, run: StudyRun, progress: Progress) -> int:
    """Run the study's trials on the chosen backend; returns the exit status (2, 1: the cluster failed)."""
    # Ray workers report every epoch only when there is a live line to show it on.
    on_epoch = progress.on_epoch if args.backend == "local" or progress.live else None
    if args.backend == "local":
        run_study(run, backend="local", on_trial=progress.on_trial, on_epoch=on_epoch)
        return 0
    # Imported here: importing Ray takes seconds that local runs and --list should not pay.
    from search.execution.ray.backend import ClusterError, RayRunError

    try:
        run_study(
            run,
            backend="ray",
            address=args.address,
            verbose=args.verbose,
            on_trial=progress.on_trial,
            on_epoch=on_epoch,
        )
    except ClusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RayRunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def dry_run(spec: StudySpec, shown: str) -> int:
    """Check the study file and the data, print the plan, and create nothing."""
    report = inspect_study_data(spec)
    print(f"Study {spec.name} from {spec.source}: {spec.description}")
    print(
        f"Space: {', '.join(spec.space)}; {spec.budget.n_trials} trials of up to "
        f"{spec.budget.max_epochs} epochs; sampler {spec.sampler.name} seed {spec.sampler.seed}"
    )
    print(f"Store (not opened): {shown}")
    if report is not None:
        print(report.format())
        if not report.ok:
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
