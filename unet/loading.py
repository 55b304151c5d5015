"""DataLoaders for ``fit``: how many worker processes, pinned memory and prefetching, per device.

``num_workers: auto`` (the default) decides by device:

* CUDA: augmentation runs in worker processes, one per CPU core the run may use (``TrainConfig.cpus``,
  which the search service sets from ``execution.cpus_per_trial``) less one for the training process,
  at least one; batches go to pinned memory so that copies to the device are asynchronous, and the
  workers persist from epoch to epoch.
* CPU: in-process loading (no workers). The same cores both augment and train there, so a worker process
  only adds inter-process copies: ``python -m bench --only pipeline`` measured a fit epoch on one core
  (a CPU trial's default reservation) in-process at 1.43x the images/s of 1 worker (1.0 vs 0.7
  images/s at 128 px, on a shared, heavily loaded 2-core machine: BENCHMARKS.md, Data pipeline).

Worker processes are forked. Before the first one is, OpenCV's own thread pool is switched off in the
training process (:func:`before_forking_workers`): a worker forked while one of that pool's threads held
its lock waits for that lock forever in its first augmentation (seen once in a test run: the worker
stuck in ``cv2.warpAffine`` in ``pthread_mutex_lock``, and the loader with it). Workers inherit the
setting, so each augments on one thread; the workers are the parallelism.
"""

from __future__ import annotations

import os
import random

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from unet.config import TrainConfig
from unet.errors import ConfigError

# Batches each worker keeps ready. The pipeline benchmark measured 4 ahead of PyTorch's default 2 in both
# pairs it ran (1 worker: 26.1 vs 21.3 items/s; 2 workers: 22.6 vs 20.2, at 128 px, BENCHMARKS.md): a
# deeper queue rides out slow items (large images, heavy augmentation draws), and four 256 px batches of
# 16 are ~50 MB of pinned memory per worker. bench/device_check.sh measures both again on a GPU machine.
PREFETCH_FACTOR = 4


def parse_num_workers(text: str) -> int | str:
    """A command line's ``--num-workers``: ``auto`` or a number (argparse reports a ValueError)."""
    return text if text == "auto" else int(text)


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_num_workers(config: TrainConfig, device: torch.device) -> int:
    """The DataLoader worker processes for ``config.num_workers`` (a number, or ``auto``) on ``device``."""
    if isinstance(config.num_workers, int):
        return config.num_workers
    if device.type != "cuda":
        return 0
    cpus = config.cpus if config.cpus is not None else usable_cpus()
    return max(1, cpus - 1)


def make_train_loader(config: TrainConfig, train: Dataset, val: Dataset, device: torch.device) -> DataLoader:
    """The shuffled, seeded training loader (validation reads whole images one by one: ``unet.validation``).

    Raises:
        ConfigError: a set is empty.
    """
    if len(train) == 0 or len(val) == 0:  # type: ignore[arg-type]
        raise ConfigError(f"training needs images in both sets but got {len(train)} train and {len(val)} val")  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(config.seed)
    workers = resolve_num_workers(config, device)
    common: dict[str, object] = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        common.update(persistent_workers=True, prefetch_factor=PREFETCH_FACTOR)
        before_forking_workers()
    # Dropping a last batch of one image keeps batch norm defined; otherwise keep every image.
    drop_last = len(train) % config.batch_size == 1 and len(train) > config.batch_size  # type: ignore[arg-type]
    train_loader = DataLoader(
        train,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=_seed_worker,
        **common,  # type: ignore[arg-type]
    )
    return train_loader


def before_forking_workers() -> None:
    """Stop OpenCV's thread pool in this process (and so in the workers forked from it): a fork that
    lands while a pool thread holds the pool's lock leaves the worker waiting on it for ever."""
    cv2.setNumThreads(0)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
