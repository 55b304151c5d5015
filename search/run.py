"""Run a hyperparameter search: ``python -m search.run --study NAME|PATH.yaml``.

Exit status: 0 done, 2 bad input (study file, data, storage URL, a stored study that conflicts, a
read-only store when trials remain to run), 3 the store was lost during the run (deleted, replaced,
truncated, or unreachable for longer than the retry window), 130 interrupted (Ctrl-C or SIGTERM),
1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import optuna
import sqlalchemy as sa
from optuna.exceptions import StorageInternalError

from search.checkpoints.keep import Reconciled, describe_policy, reconcile
from search.checkpoints.store import ArtifactsError
from search.execution.budget import Compute, Limits, describe_budget, measure_compute
from search.execution.data import depth_choices, inspect_study_data, load_study_data, plan_study_data
from search.execution.progress import Progress, summary
from search.execution.signals import sigterm_as_interrupt
from search.execution.study import StudyConflictError, count_trials
from search.execution.testset import score_on_test
from search.service import BACKENDS, StudyRun, open_study_run, run_study
from search.spec.schema import Overrides, SpecError, StudySpec, list_studies, load_spec
from search.store.engine import StoreError, open_storage
from search.store.epochs import EpochStore
from search.store.errors import StoreLostError, StoreReadOnlyError
from search.store.location import StoreLocation, add_storage_option
from unet.errors import UNetError

# Ray's own variable for the cluster to join, read here only (the backend gets it as an argument).
RAY_ADDRESS_ENV = "RAY_ADDRESS"
# Exit status when the store was lost during the run (see the module docstring).
EXIT_STORE_LOST = 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.run", description="Search U-Net hyperparameters.")
    p.add_argument("--study", help="a study name from studies/ (see --list) or a path to a .yaml file")
    p.add_argument("--list", action="store_true", help="list the shipped studies and exit")
    add_storage_option(p)
    p.add_argument("--data", type=Path, help="train on this folder (DIR/images, DIR/masks) instead")
    p.add_argument(
        "--n-trials",
        type=int,
        help="at most this many trials in total (resuming counts them): a cap on proposals beside the "
        "budget's compute, which still ends the search when it is spent",
    )
    p.add_argument(
        "--compute",
        type=float,
        help="the budget in full trials' worth of epochs (max_epochs x training images each; resuming "
        "counts what was spent): trials start until it is spent",
    )
    p.add_argument("--timeout", type=float, help="seconds after which no new trial starts")
    p.add_argument("--seed", type=int, help="sampler seed")
    p.add_argument(
        "--name", help="store the study under this name instead of the file's (e.g. the same file on --data)"
    )
    p.add_argument(
        "--patch-size", type=int, help="patch side for folder data (default: planned from the data)"
    )
    p.add_argument("--backend", choices=BACKENDS, default="ray", help="where trials run (default: ray)")
    p.add_argument(
        "--address",
        default=os.environ.get(RAY_ADDRESS_ENV),
        help=f"Ray cluster to join, e.g. 10.0.0.5:6379 (default: ${RAY_ADDRESS_ENV}, else a local Ray)",
    )
    p.add_argument("--dry-run", action="store_true", help="check the study, data and store, then stop")
    p.add_argument("--verbose", action="store_true", help="log what the service does")
    return p


def resolve(args: argparse.Namespace) -> tuple[StudySpec, StoreLocation]:
    """The spec with the command-line overrides applied, and the store's location."""
    if args.n_trials is not None and args.n_trials < 1:
        raise SpecError(f"--n-trials must be >= 1 but got {args.n_trials}")
    if args.compute is not None and not args.compute > 0:
        raise SpecError(f"--compute must be > 0 full trials but got {args.compute}")
    if args.timeout is not None and not args.timeout > 0:
        raise SpecError(f"--timeout must be > 0 seconds but got {args.timeout}")
    overrides = Overrides(
        data_path=args.data,
        n_trials=args.n_trials,
        compute=args.compute,
        timeout=args.timeout,
        seed=args.seed,
        patch_size=args.patch_size,
        name=args.name,
    )
    spec = load_spec(args.study, overrides=overrides)
    return spec, StoreLocation.parse(args.storage)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # A connection cut by the server fails its reset on return to the pool, which SQLAlchemy logs
        # with a traceback; the pool drops it and the store call is retried (search.store.retry).
        logging.getLogger("sqlalchemy.pool").setLevel(logging.CRITICAL)
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
        spec, location = resolve(args)
        shown = location.shown
        if args.dry_run:
            return dry_run(spec, shown)
        run = open_study_run(spec, location)
    except StoreReadOnlyError as e:
        return finished_summary(spec, location, e)
    except (SpecError, StoreError, StudyConflictError, UNetError, ArtifactsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    budget = spec.budget
    before = count_trials(run.study)
    print(
        f"Study {spec.name} ({spec.source or 'spec'}): {'created' if run.created else 'resumed'} in {shown}",
        file=sys.stderr,
    )
    of_trials = f" of {budget.n_trials}" if budget.n_trials is not None else ""
    spent = measure_compute(run.study, run.epochs, spec, compute=budget.compute)
    print(
        f"Data: {run.data.description}; plan: {run.data.plan.format()}; backend {args.backend}; "
        f"budget: {describe_budget(spec)}; {before.finished}{of_trials} trials already finished, "
        f"{spent.spent_trials:.1f} full trials' compute spent",
        file=sys.stderr,
    )
    print(f"Checkpoints: {describe_policy(run.checkpoints, spec.name)}", file=sys.stderr)

    def compute() -> Compute:
        return measure_compute(run.study, run.epochs, spec, compute=budget.compute)

    progress = Progress(
        run.study,
        n_trials=budget.n_trials,
        max_epochs=budget.max_epochs,
        timeout=budget.timeout,
        compute=compute if budget.compute is not None else None,
    )
    try:
        status = run_and_summarise(args, run, progress, shown)
    except StoreLostError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return EXIT_STORE_LOST
    except (StorageInternalError, sa.exc.SQLAlchemyError) as e:
        logging.getLogger(__name__).debug("the store failed", exc_info=True)  # --verbose shows where
        cause = e.__cause__ if isinstance(e, StorageInternalError) and e.__cause__ else e
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        print(
            f"\nerror: the study store {shown} failed during the run: {first}: check the server (or the "
            f"file); the running trial is reaped and retried when the study resumes",
            file=sys.stderr,
        )
        return EXIT_STORE_LOST
    return status


def run_and_summarise(args: argparse.Namespace, run: StudyRun, progress: Progress, shown: str) -> int:
    """Run the trials, then print the summary; returns the exit status (130: interrupted).

    The checkpoint index is reconciled with its files before the trials and after them (before the test
    scoring reads it): what was missing, left unfinished or swept is said in one line each.
    """
    spec = run.spec
    if run.checkpoints.enabled:
        print_reconciled(reconcile(run.storage, spec.name, run.checkpoints), spec.name)
    try:
        with sigterm_as_interrupt():
            status = run_trials(args, run, progress)
    except KeyboardInterrupt:
        running = "the running trial is" if args.backend == "local" else "running trials are"
        print(f"\ninterrupted: {running} marked interrupted and will run again on resume", file=sys.stderr)
        status = 130
    if run.checkpoints.enabled:
        # Once the study is done (its budget has no room and no trial runs) no paused trial can be
        # continued: their states go. After a timeout or an interrupt a resume (or another worker) may.
        reconciled = reconcile(run.storage, spec.name, run.checkpoints, keep_paused=not _study_done(run))
        print_reconciled(reconciled, spec.name)
    if run.test is not None and status == 0:
        if run.checkpoints.enabled:
            score_on_test(run.storage, spec.name, run.test, top_k=spec.test.top_k)
        else:
            print("Test data: not scored, since no checkpoint is kept (see artifacts)", file=sys.stderr)
    spent = measure_compute(run.study, run.epochs, spec, compute=spec.budget.compute)
    print(summary(run.study, n_trials=spec.budget.n_trials, storage_display=shown, spent=spent))
    return status


def _study_done(run: StudyRun) -> bool:
    """Whether the study's budget has no room for another trial and none of its trials runs."""
    spent = measure_compute(run.study, run.epochs, run.spec, compute=run.spec.budget.compute)
    return Limits.of(run.spec).reached(count_trials(run.study), spent)


def print_reconciled(done: Reconciled, study: str) -> None:
    """One line for each kind of change the checkpoint reconciliation made (nothing when none)."""
    if done.missing:
        print(
            f"warning: the kept checkpoint(s) of trial(s) {_numbers(done.missing)} are missing from "
            f"{done.folder} (deleted?): dropped from the index; rebuild one with "
            f"python -m search.retrain --study {study} --trial N --out DIR",
            file=sys.stderr,
        )
    if done.unfinished:
        print(
            f"Checkpoints: trial(s) {_numbers(done.unfinished)} did not complete (a worker was lost before "
            f"its result was stored): their checkpoints are removed",
            file=sys.stderr,
        )
    if done.swept:
        print(
            f"Checkpoints: removed {len(done.swept)} file(s) from {done.folder} that no kept trial names "
            f"(partial, empty or unrecorded uploads of a full disk or a lost worker)",
            file=sys.stderr,
        )
    if done.paused:
        print(
            f"Checkpoints: removed the saved state(s) of {len(done.paused)} paused trial(s) from "
            f"{done.folder} (the study's budget is spent: they can no longer be continued)",
            file=sys.stderr,
        )


def _numbers(trials: tuple[int, ...]) -> str:
    return ", ".join(f"#{n}" for n in trials)


def finished_summary(spec: StudySpec, location: StoreLocation, error: StoreReadOnlyError) -> int:
    """Print the summary of a study a read-only store already holds in full; else say why not (2)."""
    try:
        storage = open_storage(location, read_only=True)
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except (StoreError, KeyError):
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = count_trials(study)
    spent = measure_compute(study, EpochStore(storage.engine), spec, compute=spec.budget.compute)
    if not Limits.of(spec).reached(counts, spent):
        print(f"error: {error}", file=sys.stderr)
        return 2
    shown = location.shown
    print(f"Study {spec.name}: finished, read from the read-only store {shown}", file=sys.stderr)
    print(summary(study, n_trials=spec.budget.n_trials, storage_display=shown, spent=spent))
    return 0


def run_trials(args: argparse.Namespace, run: StudyRun, progress: Progress) -> int:
    """Run the study's trials on the chosen backend; returns the exit status (2, 1: the cluster failed)."""
    # Ray workers report every epoch only when there is a live line to show it on.
    on_epoch = progress.on_epoch if args.backend == "local" or progress.live else None
    if args.backend == "local":
        run_study(run, backend="local", on_trial=progress.on_trial, on_epoch=on_epoch)
        return 0
    # Imported here: importing Ray takes seconds that local runs and --list should not pay.
    from search.execution.ray.backend import RayRunError
    from search.execution.ray.session import ClusterError

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
        f"Space: {', '.join(spec.space)}; budget: {describe_budget(spec)}; "
        f"sampler {spec.sampler.name} seed {spec.sampler.seed}"
    )
    if spec.objective.folds > 1:
        print(
            f"Objective: {spec.objective.metric}, the mean of {spec.objective.folds} folds over the training "
            "and validation images (pruning on fold 1)"
        )
    print(f"Store (not opened): {shown}")
    if report is not None:
        print(report.format())
        if not report.ok:
            return 2
    fingerprint = report.fingerprint() if report is not None else None
    plan = plan_study_data(spec, fingerprint) if fingerprint is not None else load_study_data(spec).plan
    print(f"Data plan: {plan.format()}; depths {', '.join(map(str, depth_choices(spec)))} fit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
