"""The worker processes of the store benchmark: started together (spawned, behind one barrier), each with a
connection of its own to the store, their results collected, and the study dropped afterwards."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

import optuna

from bench.store.bulk import delete_study
from search.store.engine import open_storage
from search.store.location import StoreLocation

# Seconds to wait for the workers to reach the barrier, and then for each one's result.
WAIT_S = 600


@dataclass
class Workers:
    """Worker processes running ``target(location, study_name, *args, barrier, results)``."""

    processes: Sequence[BaseProcess]
    barrier: Any  # a multiprocessing Barrier: the workers, plus the caller when it waits too
    results: Any  # a multiprocessing Queue: one dict per worker

    def collect(self) -> list[dict[str, Any]]:
        """Every worker's result, once all have put theirs; then wait for them to exit."""
        outcomes = [self.results.get(timeout=WAIT_S) for _ in self.processes]
        for p in self.processes:
            p.join(timeout=60)
        return outcomes


def start_workers(
    target: Callable[..., None],
    location: StoreLocation,
    study_name: str,
    args: tuple[Any, ...],
    *,
    count: int,
    caller_waits: bool = False,
) -> Workers:
    """Spawn ``count`` workers; ``caller_waits``: the barrier also waits for the caller (a common start)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(count + int(caller_waits)), context.Queue()
    processes = [
        context.Process(target=target, args=(location, study_name, *args, barrier, results))
        for _ in range(count)
    ]
    for p in processes:
        p.start()
    return Workers(processes, barrier, results)


@contextlib.contextmanager
def worker_study(
    location: StoreLocation, study_name: str
) -> Iterator[tuple[optuna.storages.RDBStorage, optuna.Study]]:
    """In a worker process: its own connection to the store and the study, closed at the end."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(location)
    try:
        yield storage, optuna.load_study(storage=storage, study_name=study_name)
    finally:
        storage.remove_session()
        storage.engine.dispose()


def end_workers_and_drop(
    workers: Workers | None, storage: optuna.storages.RDBStorage, study_name: str
) -> None:
    """After a multi-worker measurement: kill workers still alive, delete the study, close the store."""
    for p in workers.processes if workers is not None else ():
        if p.is_alive():
            p.kill()
            p.join()
    delete_study(storage, study_name)
    storage.remove_session()
    storage.engine.dispose()
