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
which the next run reaps and retries, and a local Ray whose leftovers (Ray's agents) are ended by a
watchdog or the next run (:mod:`search.execution.ray.session`, :mod:`search.execution.ray.leftovers`).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import ray
from ray import tune

from search.execution.objective import TrialContext
from search.execution.ray.searcher import OnTrial, StoreSearcher
from search.execution.ray.session import ClusterError, ray_session
from search.execution.ray.worker import WorkerJob, run_trial
from search.execution.scheduling import reap_and_retry
from search.execution.study import Counts, count_trials
from search.store.location import StoreLocation
from search.store.reaper import GRACE_SECONDS

logger = logging.getLogger(__name__)


class RayRunError(RuntimeError):
    """Trials cannot run on the cluster's workers (they fail before training starts)."""


def run_ray(
    study: optuna.Study,
    ctx: TrialContext,
    *,
    location: StoreLocation,
    n_trials: int | None = None,
    compute: float | None = None,
    timeout: float | None = None,
    address: str | None = None,
    verbose: bool = False,
    grace_seconds: float = GRACE_SECONDS,
    on_trial: OnTrial | None = None,
    reuse_actors: bool = True,
) -> Counts:
    """Run trials on Ray until the budget is spent or ``timeout`` seconds passed.

    Args:
        study: the study (:func:`search.execution.study.open_study`).
        ctx: the driver's context: spec, store, heartbeat interval, and ``on_epoch`` (when set, workers
            report every epoch to it, e.g. for a live progress line).
        location: where ``ctx.storage`` is; the workers get this value and open the store from it.
        n_trials: at most this many counted trials (finished ones included; None: no cap).
        compute: full trials' worth of epochs to spend (spent ones included; None: no compute limit;
            :mod:`search.execution.budget`).
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
    job = WorkerJob(
        location=location,
        spec=ctx.spec,
        heartbeat_interval=ctx.heartbeat_interval,
        report_epochs=ctx.on_epoch is not None,
        verbose=verbose,
    )
    with ray_session(address, verbose=verbose) as session, _tune_dir(session.folder) as tune_dir:
        # Reaped once Ray is up: the workers a killed run of ours left on this machine are ended by then.
        reap_and_retry(study, ctx, grace_seconds=grace_seconds)
        searcher = StoreSearcher(
            study,
            ctx,
            n_trials=n_trials,
            compute=compute,
            timeout=timeout,
            grace_seconds=grace_seconds,
            on_trial=on_trial,
            on_epoch=ctx.on_epoch,
        )
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
            if session.owned:  # stop the workers first, so that none writes to a trial after it is marked
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
def _tune_dir(parent: Path | None) -> Iterator[Path]:
    """A temporary directory for Tune's experiment files, removed afterwards (nothing in it is ours).

    Inside the local Ray's folder when there is one, so that a killed driver's is removed with it.
    """
    path = Path(tempfile.mkdtemp(prefix="unet-search-tune-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
