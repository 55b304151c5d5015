"""The Ray side of the Ray backend: one Tune trial runs one Optuna trial, in a Ray worker process.

The driver (:mod:`search.execution.ray.backend`) claims the Optuna trial and hands Tune a config that names it
(``optuna_trial_id``, ``trial_number``, ``salt``); :func:`run_trial` runs in the worker and does what the
local backend does in its own process: :func:`search.execution.objective.execute_trial`
(the same code, so pruning,
intermediate values, epoch rows and diagnosis are identical) and ``tell``. It then reports a small final
result (:data:`RESULT_KIND`) that the driver shows in its progress display.

What a worker process needs for every trial (the store, the spec, the data, the study) is built on its
first trial and kept in module-level caches: Tune reuses the worker's actor for the next trial, so the
data is read once per worker process, not once per trial.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import optuna
import ray
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray import tune

from search.checkpoints.keep import checkpoint_policy
from search.execution.data import StudyData, load_study_data
from search.execution.objective import TrialContext, execute_trial
from search.execution.scheduling import tell, tell_interrupted
from search.execution.study import make_sampler
from search.outcome import CUDA_VISIBLE_DEVICES, GPU_FALLBACK, GPU_IDS, RAY_NODE_ID, TrialOutcome
from search.spec.schema import StudySpec
from search.store.engine import open_storage
from search.store.location import StoreLocation
from search.store.reaper import fail_trial
from unet.history import EpochRecord

logger = logging.getLogger(__name__)

# The "kind" of the results a worker reports: one per epoch (only when the driver asked for them), then
# one for the trial.
EPOCH_KIND = "epoch"
RESULT_KIND = "trial"
# Final states besides Optuna's: the worker could not set up (store, spec or data: the message says
# why), the trial was no longer RUNNING when the worker got to it, or another process finished it while it
# trained (a reaper that took the worker for lost).
START_FAILED = "START_FAILED"
SKIPPED = "SKIPPED"
TAKEN = "TAKEN"


@dataclass(frozen=True)
class WorkerJob:
    """What every trial of a run shares, sent once to the workers (it is not part of any Tune config).

    The store's URL may hold a password: it travels inside this object, never in a Tune config, a trial
    name or a log line.
    """

    location: StoreLocation  # the study store, as the driver parsed it (SQLite paths absolute)
    spec: StudySpec  # the resolved spec, built once by the driver (unpickled here, not validated again)
    heartbeat_interval: float  # seconds between a running trial's heartbeats
    report_epochs: bool  # report every epoch to the driver (for a live progress line)
    verbose: bool  # keep Optuna's and the training library's info logs in the worker


# Per worker process: the store by location, the data by spec fingerprint, the study by location and name.
_storages: dict[StoreLocation, optuna.storages.RDBStorage] = {}
_data: dict[str, StudyData] = {}
_studies: dict[tuple[StoreLocation, str], optuna.Study] = {}


def run_trial(config: dict[str, Any], job: WorkerJob) -> None:
    """Tune function trainable: run the Optuna trial ``config`` names, tell the outcome, report it.

    Args:
        config: the driver's suggestion: ``optuna_trial_id``, ``trial_number`` and ``salt`` (the sampler
            salt the driver asked with, so that this worker's sampler proposes what a local run would).
        job: what every trial shares (:class:`WorkerJob`).
    """
    trial_id = int(config["optuna_trial_id"])
    try:
        ctx, study = _worker_state(job)
        # Also brings this process's trial cache up to date: Optuna's Trial only works on trials it knows.
        running = {t._trial_id for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    except Exception as e:  # reported to the driver, which retries the trial or stops the run
        logger.exception("the worker could not set up trial %s", config.get("trial_number"))
        _report(START_FAILED, message=_first_line(e))
        return
    if trial_id not in running:
        # Reaped or interrupted while Tune kept it pending: whoever finished it enqueued its retry.
        logger.warning("trial %s was finished before it started here: skipped", config.get("trial_number"))
        _report(SKIPPED, message="finished elsewhere before it started")
        return
    study.sampler = make_sampler(ctx.spec, salt=int(config["salt"]))
    trial = optuna.trial.Trial(study, trial_id)
    try:
        trial.set_user_attr(RAY_NODE_ID, ray.get_runtime_context().get_node_id())
        record_gpus(trial)
        outcome = execute_trial(ctx, trial)
        tell(study, trial, outcome)
    except UpdateFinishedTrialError:
        logger.warning("trial %d was finished by another process while it ran here", trial.number)
        _report(TAKEN, message="finished by another process (reaped as lost?) while it ran")
        return
    except KeyboardInterrupt:
        tell_interrupted(study, trial, ctx)
        _report(TrialState.FAIL.name, reason="interrupted", message="interrupted")
        return
    except Exception as e:
        # Something execute_trial does not expect (a bug, a broken node): the trial fails with the error
        # as its reason, counted like any training error, and the study goes on. (The local backend
        # stops the run instead; a Ray run must not lose its other running trials to one of them.)
        logger.exception("trial %d raised", trial.number)
        outcome = _fail_with_error(ctx, trial, e)
    _report(outcome.state.name, value=outcome.value, reason=outcome.reason, message=outcome.message)


def record_gpus(trial: optuna.Trial) -> None:
    """Record the GPUs Ray gave this trial (``gpu_ids``) and what the process sees of them.

    Ray sets ``CUDA_VISIBLE_DEVICES`` to the trial's GPU ids, so the training library's ``auto`` (and
    ``cuda``) device is the first GPU of the trial's share, whichever physical GPU that is. Where Ray
    schedules by GPUs the process cannot use (a cluster started with ``--num-gpus`` on a machine without
    CUDA, or a CPU build of torch), the trial trains on the CPU, and says so.
    """
    gpu_ids = [str(i) for i in ray.get_gpu_ids()]
    trial.set_user_attr(GPU_IDS, gpu_ids)
    trial.set_user_attr(CUDA_VISIBLE_DEVICES, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if gpu_ids and not torch.cuda.is_available():
        logger.warning(
            "trial %d: Ray assigned GPU(s) %s but torch sees no CUDA device: training on the CPU",
            trial.number,
            ",".join(gpu_ids),
        )
        trial.set_user_attr(GPU_FALLBACK, "cpu: torch sees no CUDA device")


def _report(
    state: str, *, value: float | None = None, reason: str | None = None, message: str | None = None
) -> None:
    tune.report({"kind": RESULT_KIND, "state": state, "value": value, "reason": reason, "message": message})


def _report_epoch(trial: optuna.Trial, record: EpochRecord) -> None:
    tune.report({"kind": EPOCH_KIND, "trial_number": trial.number, **record.to_dict()})


def _fail_with_error(ctx: TrialContext, trial: optuna.Trial, error: Exception) -> TrialOutcome:
    first = _first_line(error)
    frozen = ctx.storage.get_trial(trial._trial_id)
    if frozen.state == TrialState.RUNNING:
        fail_trial(
            ctx.storage,
            frozen,
            reason="error",
            stop_epoch=ctx.epochs.last_epoch(trial._trial_id),
            detail={"error": first},
            message=first,
        )
    return TrialOutcome(TrialState.FAIL, reason="error", message=first)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def _worker_state(job: WorkerJob) -> tuple[TrialContext, optuna.Study]:
    """The trial context and study for ``job``, built on this process's first trial of the job."""
    if not job.verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("unet").setLevel(logging.ERROR)
    spec = job.spec
    storage = _storages.get(job.location)
    if storage is None:
        window = spec.execution.store_outage_s
        storage = _storages[job.location] = open_storage(job.location, outage_window_s=window)
    data = _data.get(spec.fingerprint())
    if data is None:
        logger.info("loading the data of study %s in this worker", spec.name)
        data = _data[spec.fingerprint()] = load_study_data(spec)
    study = _studies.get((job.location, spec.name))
    if study is None:
        study = _studies[(job.location, spec.name)] = optuna.load_study(
            study_name=spec.name, storage=storage, sampler=make_sampler(spec)
        )
    ctx = TrialContext(
        spec=spec,
        storage=storage,
        data=data,
        heartbeat_interval=job.heartbeat_interval,
        on_epoch=_report_epoch if job.report_epochs else None,
        checkpoints=checkpoint_policy(spec, job.location),
    )
    return ctx, study
