"""make_train_loader / resolve_num_workers: worker processes, pinned memory and prefetching per device."""

from __future__ import annotations

import cv2
import pytest
import torch
from torch.utils.data import TensorDataset

from unet.config import TrainConfig
from unet.errors import ConfigError
from unet.loading import (
    PREFETCH_FACTOR,
    make_train_loader,
    parse_num_workers,
    resolve_num_workers,
    usable_cpus,
)

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("num_workers", "cpus", "device", "expected"),
    [
        ("auto", None, CPU, 0),  # in-process loading on CPU (measured faster, loading.py)
        ("auto", 8, CPU, 0),
        ("auto", 1, CUDA, 1),  # a GPU trial always gets a worker
        ("auto", 2, CUDA, 1),
        ("auto", 6, CUDA, 5),  # the reserved cores less the training process's
        (3, 6, CUDA, 3),  # a number is taken as it is
        (2, None, CPU, 2),
    ],
)
def test_resolve_num_workers(num_workers, cpus, device, expected):
    assert resolve_num_workers(TrainConfig(num_workers=num_workers, cpus=cpus), device) == expected


def test_auto_without_cpus_uses_the_affinity():
    assert resolve_num_workers(TrainConfig(), CUDA) == max(1, usable_cpus() - 1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"num_workers": "many"}, "num_workers must be an integer"), ({"cpus": 0}, "cpus must be >= 1")],
)
def test_bad_settings(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


def test_parse_num_workers():
    assert parse_num_workers("auto") == "auto" and parse_num_workers("3") == 3
    with pytest.raises(ValueError):
        parse_num_workers("x")


def data(n: int) -> TensorDataset:
    return TensorDataset(torch.zeros(n, 1, 8, 8), torch.zeros(n, 8, 8, dtype=torch.long))


def test_cpu_loaders_load_in_process():
    train = make_train_loader(TrainConfig(batch_size=4), data(9), data(3), CPU)
    assert train.num_workers == 0 and not train.pin_memory
    assert train.drop_last  # 9 % 4 == 1: no batch of one image for batch norm
    assert len(list(train)) == 2


def test_worker_loaders_persist_and_prefetch():
    train = make_train_loader(TrainConfig(batch_size=4, num_workers=1), data(8), data(4), CPU)
    assert train.num_workers == 1 and train.persistent_workers and train.prefetch_factor == PREFETCH_FACTOR
    first = [x.sum().item() for x, _ in train]
    assert first == [x.sum().item() for x, _ in train]  # a second epoch on the same worker


def test_worker_loaders_switch_opencv_threads_off_before_forking():
    """A worker forked while an OpenCV pool thread held the pool's lock hung in its first cv2.warpAffine
    (seen in a test run of the pipeline benchmark; the race itself did not recur on demand). So a loader
    with workers stops that pool first, and its workers augment with OpenCV on one thread."""
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        make_train_loader(TrainConfig(batch_size=4), data(8), data(4), CPU)
        assert cv2.getNumThreads() == 2  # in-process loading keeps OpenCV's threads
        train = make_train_loader(TrainConfig(batch_size=4, num_workers=1), data(8), data(4), CPU)
        assert cv2.getNumThreads() == 1  # setNumThreads(0): sequential, reported as one thread
        assert len(list(train)) == 2
    finally:
        cv2.setNumThreads(threads)


def test_empty_set_is_refused():
    with pytest.raises(ConfigError, match="needs images in both sets"):
        make_train_loader(TrainConfig(), data(4), data(0), CPU)
