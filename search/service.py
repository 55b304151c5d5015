"""One way to run a study, for the command line, the Kubernetes workers and the benchmarks alike.

:func:`open_study_run` loads what a run needs once (the data, the store from its one URL, the study,
created or resumed) and :func:`run_study` runs the trials on the chosen backend until the study's budget
is spent. The spec comes in built (``search.spec.schema.load_spec``, with the command line's
overrides applied before its one validation) and travels as it is to the Ray workers.

This module sits beside the packages rather than inside ``execution/``: it wires spec, data, store and
execution together, which none of them does for the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial
from torch.utils.data import Dataset

from search.checkpoints.keep import CheckpointPolicy, checkpoint_policy
from search.checkpoints.store import probe_location
from search.execution.data import StudyData, load_study_data
from search.execution.local import run_local
from search.execution.objective import TrialContext
from search.execution.study import Counts, open_study
from search.execution.testset import load_test_set
from search.outcome import DATA_PLAN, TrialOutcome
from search.spec.schema import StudySpec
from search.store.engine import open_storage
from search.store.epochs import EpochStore
from search.store.location import StoreLocation
from search.store.reaper import GRACE_SECONDS
from unet.history import EpochRecord

# ray (the default): trials in parallel on a Ray cluster, or on a local Ray started for the run;
# local: trials one after another in this process.
BACKENDS = ("ray", "local")

OnTrial = Callable[[FrozenTrial, TrialOutcome, Counts], None]
OnEpoch = Callable[[optuna.Trial, EpochRecord], None]


@dataclass(frozen=True)
class StudyRun:
    """What one run of a study opened: the spec, its data, the store and the study in it."""

    spec: StudySpec  # the resolved spec, built once
    data: StudyData  # the datasets, loaded once in this process
    location: StoreLocation  # where the store is, parsed once; handed to the Ray workers as it is
    storage: optuna.storages.RDBStorage  # the store, opened once from the location
    study: optuna.Study  # the study in the store
    created: bool  # whether this run created the study (else it resumes it)
    # Where the top trials keep their checkpoints (search.checkpoints): the study file's artifacts section
    # applied to the store's URL.
    checkpoints: CheckpointPolicy = field(default_factory=lambda: CheckpointPolicy(None, 0))
    test: Dataset | None = None  # held-out test images (search.execution.testset), None without

    @property
    def epochs(self) -> EpochStore:
        """The store's epoch table (one row per trained epoch of every trial)."""
        return EpochStore(self.storage.engine)


def open_study_run(spec: StudySpec, location: StoreLocation) -> StudyRun:
    """Load the data, open the store at ``location`` and create or resume the study.

    Args:
        spec: the study, e.g. ``load_spec(name, overrides=...)``.
        location: the store, as :meth:`StoreLocation.parse` gives it (SQLite paths absolute, so Ray
            workers elsewhere open the same file).

    Raises:
        DataError: the study's data folder is not usable (nothing is created in the store).
        StoreError: the store cannot be opened.
        StudyConflictError: the store holds a study of that name made from a different study file.
        ArtifactsError: the study's artifacts location cannot be created or written.
    """
    data = load_study_data(spec)
    test = load_test_set(spec, data)  # checked before the store is touched, like the data
    checkpoints = checkpoint_policy(spec, location)
    # First: a read-only store is read-only whatever the artifacts' folder.
    storage = open_storage(location, outage_window_s=spec.execution.store_outage_s)
    if checkpoints.location is not None and checkpoints.enabled:
        # A location that cannot be used (missing, read-only, full) fails here, not in a trial.
        probe_location(checkpoints.location)
    study, created = open_study(storage, spec)
    study.set_user_attr(DATA_PLAN, data.plan.to_dict())  # the patch size and why, with the study
    return StudyRun(
        spec=spec,
        data=data,
        location=location,
        storage=storage,
        study=study,
        created=created,
        checkpoints=checkpoints,
        test=test,
    )


def run_study(
    run: StudyRun,
    *,
    backend: str = "ray",
    address: str | None = None,
    verbose: bool = False,
    on_trial: OnTrial | None = None,
    on_epoch: OnEpoch | None = None,
    grace_seconds: float = GRACE_SECONDS,
    reuse_actors: bool = True,
) -> Counts:
    """Run trials until the spec's budget is spent (its compute, its ``n_trials`` cap) or its timeout passed.

    Args:
        run: what :func:`open_study_run` opened.
        backend: one of :data:`BACKENDS`.
        address: the Ray cluster to join (ray only; None starts a local Ray for the run).
        verbose: let Ray's own logs and the workers' output through (ray only).
        on_trial: called after every trial's end with the trial, its outcome and the counts.
        on_epoch: called for every epoch of every trial (on Ray, the workers then report each epoch).
        grace_seconds: how long a remote worker may stay silent before its trial is failed as lost.
        reuse_actors: ray only: run the next trial in the last one's worker process (off to measure it).

    Returns:
        The study's counts at the end.

    Raises:
        ValueError: ``backend`` is not one of :data:`BACKENDS`.
        ClusterError, RayRunError: (ray) the cluster cannot run the study; see
            :func:`search.execution.ray.backend.run_ray`.
        KeyboardInterrupt: the run was interrupted; running trials are marked ``interrupted`` and
            enqueued for the next run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} but got {backend!r}")
    spec = run.spec
    ctx = TrialContext(
        spec=spec, storage=run.storage, data=run.data, on_epoch=on_epoch, checkpoints=run.checkpoints
    )
    n_trials, compute, timeout = spec.budget.n_trials, spec.budget.compute, spec.budget.timeout
    if backend == "local":
        return run_local(
            run.study,
            ctx,
            n_trials=n_trials,
            compute=compute,
            timeout=timeout,
            grace_seconds=grace_seconds,
            on_trial=on_trial,
        )
    # Imported here: importing Ray takes seconds that local runs should not pay.
    from search.execution.ray.backend import run_ray

    return run_ray(
        run.study,
        ctx,
        location=run.location,
        n_trials=n_trials,
        compute=compute,
        timeout=timeout,
        address=address,
        verbose=verbose,
        grace_seconds=grace_seconds,
        on_trial=on_trial,
        reuse_actors=reuse_actors,
    )
