"""Store benchmark: what the service's writes cost on SQLite, PostgreSQL and MariaDB, alone and concurrently.

Three measurements per backend, each on a study of its own with a unique name, deleted afterwards:

- ``write``: one epoch (``EpochStore.record_epoch`` + ``trial.report``) and one trial (``ask``, two
  parameters, ``tell``), in milliseconds (median).
- ``workers``: 1, 2, 4 and 8 worker processes on one study, each running the store traffic of a service
  trial as ``search.execution.local.run_local`` does it
  (reap, claim lock + count + ask, heartbeat, epochs with
  reports, diagnosis attributes, tell) with a random sampler, so that only the store is measured.
  Every exception is counted as an error, and so is a trial or epoch row missing at the end.
- ``growth``: the same per-trial traffic in a study that already holds 100, 1,000 and 10,000 finished
  trials (inserted in bulk into Optuna's tables, each with parameters, a value, intermediate values and
  user attributes, and our epoch rows). ``cold`` is the first trial of a worker that just loaded the
  study (it reads every trial once), ``warm`` the median of the next ones.
- ``load`` (PostgreSQL and MariaDB): 16 workers started together fill one study's budget, with lost
  trials to reap (:mod:`bench.store.load`): trials/s, p50/p95 store time per trial, and the checks.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from bench.store.bulk import add_finished_trials, delete_study, epoch_record
from bench.store.load import budget_run
from bench.store.workers import end_workers_and_drop, start_workers, worker_study
from search.execution.study import count_trials
from search.outcome import BEST_EPOCH, DIAGNOSIS, DIAGNOSIS_SUMMARY, TRAIN_IMAGES
from search.store.claims import claim_lock
from search.store.engine import open_storage
from search.store.epochs import EpochStore
from search.store.heartbeat import Heartbeat
from search.store.location import StoreLocation
from search.store.reaper import GRACE_SECONDS, reap_lost_trials

logger = logging.getLogger(__name__)

SERVER_URLS = {
    "postgresql": os.environ.get(
        "UNET_SEARCH_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("UNET_SEARCH_BENCH_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
BACKENDS = ("sqlite", "postgresql", "mariadb")
STUDY_PREFIX = "bench-store-"


def _suggest(trial: optuna.Trial) -> None:
    trial.suggest_float("learning_rate", 1e-5, 1e-1, log=True)
    trial.suggest_categorical("loss", ["dice_bce", "dice", "bce", "focal"])


def service_trial(storage: optuna.storages.RDBStorage, study: optuna.Study, epochs: int) -> None:
    """The store traffic of one service trial (``run_local`` + ``execute_trial``), without the training."""
    reap_lost_trials(storage, study.study_name, grace_seconds=GRACE_SECONDS)
    with claim_lock(storage.engine, study.study_name):
        count_trials(study)
        study.sampler = optuna.samplers.RandomSampler()
        trial = study.ask()
    _suggest(trial)
    trial.set_user_attr(TRAIN_IMAGES, 64)
    store = EpochStore(storage.engine)
    # An hour between beats: only the beats on entry and exit happen, as in a trial shorter than that.
    with Heartbeat(storage, study.study_name, trial._trial_id, interval=3600):
        for epoch in range(1, epochs + 1):
            store.record_epoch(study.study_name, trial._trial_id, trial.number, epoch_record(epoch))
            trial.report(0.5, epoch)
    trial.set_user_attr(BEST_EPOCH, epochs)
    trial.set_user_attr(DIAGNOSIS, "healthy")
    trial.set_user_attr(DIAGNOSIS_SUMMARY, "benchmark trial")
    study.tell(trial, 0.5)


def _location(backend: str, tmp: Path) -> StoreLocation:
    """The backend's store, parsed once (the workers get the parsed value)."""
    return StoreLocation.parse(
        f"sqlite:///{tmp / 'bench-store.db'}" if backend == "sqlite" else SERVER_URLS[backend]
    )


def _new_study(storage: optuna.storages.RDBStorage) -> optuna.Study:
    name = f"{STUDY_PREFIX}{uuid.uuid4().hex[:12]}"
    return optuna.create_study(storage=storage, study_name=name, direction="maximize")


def _ms(seconds: list[float]) -> float:
    return round(1000 * statistics.median(seconds), 2)


def write_costs(storage: optuna.storages.RDBStorage, *, epochs: int, trials: int) -> dict[str, float]:
    """Median milliseconds of one epoch write (row + report) and of one ask/suggest/tell."""
    study = _new_study(storage)
    try:
        store = EpochStore(storage.engine)
        trial = study.ask()
        epoch_s = []
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            store.record_epoch(study.study_name, trial._trial_id, trial.number, epoch_record(epoch))
            trial.report(0.5, epoch)
            epoch_s.append(time.perf_counter() - started)
        study.tell(trial, 0.5)
        trial_s = []
        for _ in range(trials):
            started = time.perf_counter()
            trial = study.ask()
            _suggest(trial)
            study.tell(trial, 0.5)
            trial_s.append(time.perf_counter() - started)
        service_s = []
        for _ in range(max(trials // 2, 1)):
            started = time.perf_counter()
            service_trial(storage, study, epochs=1)
            service_s.append(time.perf_counter() - started)
    finally:
        delete_study(storage, study.study_name)
    return {
        "epoch_ms": _ms(epoch_s),
        "trial_ms": _ms(trial_s),
        "service_trial_1_epoch_ms": _ms(service_s),
    }


def _worker(
    location: StoreLocation, study_name: str, trials: int, epochs: int, barrier: Any, results: Any
) -> None:
    errors: list[str] = []
    seconds: list[float] = []
    with worker_study(location, study_name) as (storage, study):
        barrier.wait()
        started = time.perf_counter()
        for _ in range(trials):
            begun = time.perf_counter()
            try:
                service_trial(storage, study, epochs)
            except Exception as e:  # counted, not hidden: every error is reported with where it came from
                first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
                errors.append(f"{type(e).__name__} in {_where(e)}: {first}")
            seconds.append(time.perf_counter() - begun)
        results.put({"errors": errors, "seconds": seconds, "wall": time.perf_counter() - started})


def _where(error: BaseException) -> str:
    """The innermost frame of the service's code (else Optuna's) that the error passed through."""
    frames = traceback.extract_tb(error.__traceback__)
    for marker in ("/search/", "/optuna/"):
        inside = [f for f in frames if marker in f.filename]
        if inside:
            f = inside[-1]
            return f"{marker.strip('/')}/{Path(f.filename).name}:{f.name}"
    return "bench"


def concurrent_workers(location: StoreLocation, *, workers: int, trials: int, epochs: int) -> dict[str, Any]:
    """``workers`` processes run ``trials`` service trials each on one new study; errors are counted."""
    storage = open_storage(location)
    study = _new_study(storage)
    running = None
    try:
        running = start_workers(_worker, location, study.study_name, (trials, epochs), count=workers)
        outcomes = running.collect()
        errors = [e for o in outcomes for e in o["errors"]]
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        rows = EpochStore(storage.engine).read_epochs(study.study_name)
        expected = workers * trials
        failed = len(errors)  # a trial that raised stays RUNNING, with the epochs it wrote before
        if len(done) != expected - failed:
            errors.append(f"{len(done)} complete trials, expected {expected - failed}")
        done_ids = {t._trial_id for t in done}
        done_rows = int(rows["trial_id"].isin(done_ids).sum())
        if done_rows != len(done) * epochs:
            errors.append(f"complete trials have {done_rows} epoch rows, expected {len(done) * epochs}")
        per_trial = [s for o in outcomes for s in o["seconds"]]
        wall = max(o["wall"] for o in outcomes)
        return {
            "workers": workers,
            "trials": expected,
            "errors": len(errors),
            "error_examples": sorted(set(errors))[:3],
            "trial_ms_median": _ms(per_trial),
            "trial_ms_max": round(1000 * max(per_trial), 1),
            "trials_per_s": round(expected / wall, 1),
        }
    finally:
        end_workers_and_drop(running, storage, study.study_name)


def growth(
    storage: optuna.storages.RDBStorage, *, sizes: tuple[int, ...], trials: int, epochs: int
) -> list[dict[str, Any]]:
    """Per-trial cost of the service's traffic in a study holding each of ``sizes`` finished trials."""
    study = _new_study(storage)
    out = []
    try:
        held = 0
        for size in sizes:
            started = time.perf_counter()
            add_finished_trials(storage, study, size - held, epochs=epochs)
            insert_s = time.perf_counter() - started
            loaded = optuna.load_study(storage=storage, study_name=study.study_name)  # a worker just started
            seconds = []
            for _ in range(trials + 1):
                begun = time.perf_counter()
                service_trial(storage, loaded, epochs)
                seconds.append(time.perf_counter() - begun)
            held = size + trials + 1
            out.append(
                {
                    "trials_in_study": size,
                    "cold_trial_ms": round(1000 * seconds[0], 1),
                    "warm_trial_ms": _ms(seconds[1:]),
                    "bulk_insert_s": round(insert_s, 1),
                }
            )
    finally:
        delete_study(storage, study.study_name)
    return out


def run(
    *,
    backends: tuple[str, ...] = BACKENDS,
    worker_counts: tuple[int, ...] = (1, 2, 4, 8),
    sizes: tuple[int, ...] = (100, 1000, 10_000),
    trials: int = 6,
    epochs: int = 5,
    load_workers: int = 16,
    on_step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every measurement on every backend; a backend that fails is reported with its error, not raised.

    Args:
        backends: names from ``BACKENDS``.
        worker_counts: concurrent worker processes to try.
        sizes: study sizes (finished trials) for the growth measurement, ascending.
        trials: trials per measurement (per worker for the concurrent one).
        epochs: epochs per trial.
        load_workers: worker processes of the load measurement on the servers
            (:func:`bench.store.load.budget_run`: ``2 * load_workers`` trials, 3 of them lost at the start).
        on_step: called with a short label before each measurement (progress lines).
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        for backend in backends:
            location = _location(backend, Path(tmp))
            try:
                storage = open_storage(location)
                try:
                    if on_step:
                        on_step(f"{backend}: write costs")
                    entry: dict[str, Any] = {
                        "write": write_costs(storage, epochs=4 * epochs, trials=4 * trials)
                    }
                    entry["workers"] = []
                    for n in worker_counts:
                        if on_step:
                            on_step(f"{backend}: {n} worker(s)")
                        entry["workers"].append(
                            concurrent_workers(location, workers=n, trials=trials, epochs=epochs)
                        )
                    if on_step:
                        on_step(f"{backend}: growth to {max(sizes)} trials")
                    entry["growth"] = growth(storage, sizes=sizes, trials=trials, epochs=epochs)
                    if backend != "sqlite":  # many workers on many nodes: the servers' case
                        if on_step:
                            on_step(f"{backend}: {load_workers} workers on one budget")
                        entry["load"] = budget_run(
                            location, workers=load_workers, n_trials=2 * load_workers, lost=3, epochs=epochs
                        )
                finally:
                    storage.remove_session()
                    storage.engine.dispose()
            except Exception as e:  # one backend down must not hide the others' figures
                logger.exception("store benchmark on %s failed", backend)
                entry = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"}
            results[backend] = entry
    return results
