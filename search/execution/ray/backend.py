"""The Ray backend: trials run in parallel on the GPUs and nodes of a Ray cluster, through Ray Tune.

The study store stays the single truth, exactly as with the local backend: the driver claims trials from
it (:class:`search.execution.ray.searcher.StoreSearcher`), each Ray worker runs its trial with the same
:func:`search.execution.objective.execute_trial` and tells the store the outcome
(:mod:`search.execution.ray.worker`), so the
same study file gives the same trial states, stop reasons and intermediate values whichever backend runs
it. Tune only schedules: resources per trial from the study's ``execution`` section, at most
``execution.concurrency`` trials at once, actors reused from trial to trial, no retries of its own.

Faults: a worker process killed mid-trial, or its node lost, fails the trial as ``worker_lost`` and
enqueues its retry; a driver that is interrupted (Ctrl-C, SIGTERM) marks its running trials
``interrupted`` before it exits; a driver that is killed leaves RUNNING trials whose heartbeats stop,
which the next run reaps and retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune

from search.execution.objective import TrialContext
from search.execution.ray.searcher import OnTrial, StoreSearcher
from search.execution.ray.worker import WorkerJob, run_trial
from search.execution.scheduling import reap_and_retry
from search.execution.signals import sigterm_as_interrupt
from search.execution.study import Counts, count_trials
from search.store.location import redact_url

logger = logging.getLogger(__name__)

# Ray and Tune settings that only exist as environment variables, set for the duration of a run:
# the legacy output engine (silent at verbose=0; the new one prints a banner even then), no SIGINT
# handler of Tune's (Ctrl-C must raise KeyboardInterrupt, as SIGTERM does), no per-trial CSV/JSON/
# TensorBoard files, and trials that keep the working directory they started in.
_RAY_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
}


class ClusterError(ValueError):
    """The Ray cluster cannot run the study: unreachable, or too small for one trial."""


class RayRunError(RuntimeError):
    """Trials cannot run on the cluster's workers (they fail before training starts)."""


def run_ray(
    study: optuna.Study,
    ctx: TrialContext,
    *,
    n_trials: int,
    timeout: float | None = None,
    address: str | None = None,
    verbose: bool = False,
    grace_seconds: float = 60.0,
    on_trial: OnTrial | None = None,
    reuse_actors: bool = True,
) -> Counts:
    """Run trials on Ray until the study has ``n_trials`` counted trials or ``timeout`` seconds passed.

    Args:
        study: the study (:func:`search.execution.study.open_study`).
        ctx: the driver's context: spec, store, heartbeat interval, and ``on_epoch`` (when set, workers
            report every epoch to it, e.g. for a live progress line). The workers open the store from
            ``ctx.storage.url``: open it from :func:`search.store.location.storage_url`'s value, whose
            SQLite paths are absolute.
        n_trials: counted trials the study should end with (finished ones included).
        timeout: seconds after which no new trial starts.
        address: a Ray cluster to join (``ray.init(address=...)``); None starts a local Ray, with the
            machine's CPUs and GPUs, and shuts it down at the end. When Ray is already initialised in
            this process, that connection is used and left open.
        verbose: let Ray's own logs and the workers' output through.
        grace_seconds: how long a remote worker may stay silent before its trial is failed.
        on_trial: called after every trial's end with the trial, its outcome and the counts.
        reuse_actors: run the next trial in the actor (worker process) of the last one; off only to
            measure what that saves: a new process per trial imports torch again, seconds per trial
            (``python -m bench.orchestration``).

    Returns:
        The study's counts at the end.

    Raises:
        ClusterError: the cluster cannot be reached, or no node has the CPUs (GPUs) one trial asks for.
        RayRunError: trials kept failing before training started on the workers.
        KeyboardInterrupt: the run was interrupted (Ctrl-C, SIGTERM); the running trials are already
            marked ``interrupted`` and enqueued for the next run.
    """
    reap_and_retry(study, ctx, grace_seconds=grace_seconds)
    searcher = StoreSearcher(
        study,
        ctx,
        n_trials=n_trials,
        timeout=timeout,
        grace_seconds=grace_seconds,
        on_trial=on_trial,
        on_epoch=ctx.on_epoch,
    )
    job = WorkerJob(
        storage_url=ctx.storage.url,
        spec=ctx.spec,
        heartbeat_interval=ctx.heartbeat_interval,
        report_epochs=ctx.on_epoch is not None,
        verbose=verbose,
    )
    with _ray_session(address, verbose=verbose) as owned, _tune_dir() as tune_dir:
        resources = trial_resources(ctx.spec.execution.cpus_per_trial, ctx.spec.execution.gpus_per_trial)
        trainable = tune.with_resources(tune.with_parameters(run_trial, job=job), resources)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=-1,  # the searcher says when the study is done
                max_concurrent_trials=ctx.spec.execution.concurrency,
                reuse_actors=reuse_actors,
            ),
            run_config=tune.RunConfig(
                name=f"unet-search-{study.study_name}",
                storage_path=str(tune_dir),
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),  # retries go through the store
            ),
        )
        try:
            tuner.fit()
        except BaseException:
            if owned:  # stop the workers first, so that none of them writes to a trial after it is marked
                ray.shutdown()
            _abandon(searcher)
            raise
        _abandon(searcher)  # normally none is left: Tune reported every trial's end
    if searcher.abort_message is not None:
        raise RayRunError(searcher.abort_message)
    return count_trials(study)


def _abandon(searcher: StoreSearcher) -> None:
    interrupted = searcher.abandon()
    if interrupted:
        logger.warning("trials %s marked interrupted; they run again on resume", interrupted)


def trial_resources(cpus: float, gpus: float) -> dict[str, float]:
    """The Ray resources of one trial, checked against the nodes of the connected cluster.

    GPUs are asked for only where the cluster has some: a study written for GPUs (``gpus_per_trial``,
    fractions packing trials onto one card) still runs on a CPU-only machine, with a warning.

    Raises:
        ClusterError: no alive node has ``cpus`` CPUs (or ``gpus`` GPUs).
    """
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    most_cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    most_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    if cpus > most_cpus:
        raise ClusterError(
            f"execution.cpus_per_trial is {cpus:g} but the largest Ray node has {most_cpus:g} CPUs: "
            f"lower cpus_per_trial in the study file or add a larger node"
        )
    if gpus > 0 and most_gpus == 0:
        logger.warning(
            "execution.gpus_per_trial is %g but the Ray cluster has no GPU: trials train on CPU", gpus
        )
        gpus = 0.0
    elif gpus > most_gpus:
        raise ClusterError(
            f"execution.gpus_per_trial is {gpus:g} but the largest Ray node has {most_gpus:g} GPUs: "
            f"lower gpus_per_trial in the study file (fractions share a GPU) or add a larger node"
        )
    elif gpus == 0 and most_gpus > 0:
        logger.warning(
            "the Ray cluster has GPUs but execution.gpus_per_trial is 0: trials train on CPU "
            "(set gpus_per_trial, e.g. 1, or 0.5 to pack two trials onto a GPU)"
        )
    return {"cpu": cpus, "gpu": gpus}


@contextlib.contextmanager
def _ray_session(address: str | None, *, verbose: bool) -> Iterator[bool]:
    """Connect to (or start) Ray for the block, with Ray's output quiet unless ``verbose``.

    Yields whether this call initialised Ray (and shuts it down at the end).
    """
    # ray.init also sets RAY_AUTH_MODE for this process: put that back too, with ours.
    saved_env = {key: os.environ.get(key) for key in (*_RAY_ENV, "RAY_AUTH_MODE")}
    os.environ.update(_RAY_ENV)
    owned = not ray.is_initialized()
    quiet = [logging.getLogger(name) for name in ("ray", "ray.tune")]
    levels = [log.level for log in quiet]
    try:
        if owned:
            _init(address, verbose=verbose)
        if not verbose:
            # Tune logs every lost worker as an ERROR with its traceback; the progress line says it.
            for log in quiet:
                log.setLevel(logging.CRITICAL)
        # ray.init replaced the caller's SIGTERM handler with one that exits at once, which would leave
        # the running trials RUNNING until the next run reaps them: put ours back.
        with sigterm_as_interrupt():
            yield owned
    finally:
        if owned and ray.is_initialized():
            ray.shutdown()
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _init(address: str | None, *, verbose: bool) -> None:
    """``ray.init`` a new local instance (``address`` None) or a connection to a cluster."""
    kwargs: dict[str, Any] = {
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.ERROR,
        "include_dashboard": False,
    }
    if address is None:
        # "local": a new instance even when a `ray start` cluster runs on this machine.
        ray.init(address="local", **kwargs)
        return
    kwargs.pop("include_dashboard")
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ClusterError(
            f"cannot join the Ray cluster at {redact_url(address)!r}: {first}: check --address "
            f"(`ray status` on the head node shows it), or leave it out to start Ray on this machine"
        ) from e


@contextlib.contextmanager
def _tune_dir() -> Iterator[Path]:
    """A temporary directory for Tune's experiment files, removed afterwards (nothing in it is ours)."""
    path = Path(tempfile.mkdtemp(prefix="unet-search-tune-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
