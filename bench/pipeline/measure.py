"""Benchmark: can the data pipeline feed the training step? ``python -m bench --only pipeline``.

At one patch size, on the real nuclei images (``../shared/data/dsb2018-nuclei``), it measures:

* loader items/s: the training DataLoader (albumentations, CPU) in-process, and with 1 and 2 worker
  processes (prefetch 2 and 4), so items/s per CPU core and the gain from workers are measured;
* the same with ``geometry_on: device`` (flips and rotations left to the device) and what those cost on
  batches (:mod:`unet.data.device_geometry`, here on the CPU);
* the training step's images/s on the same batches already in memory (``unet.epoch.train_epoch`` with a
  loader that costs nothing), and a whole ``fit`` epoch with 0 and 1 loader workers on the CPU;
* ``torch.compile``: the extra seconds of the first compiled step and the steady-state speedup, turned
  into the number of steps a trial needs before compiling pays, against the shipped studies' trials.

The ratio loader items/s per core / step images/s says how many cores keep one step busy; the same
ratio on a GPU comes from ``bench/device_check.sh``.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from bench.paths import DSB
from unet.config import ModelConfig, TrainConfig
from unet.data import folder_datasets
from unet.data.device_geometry import DeviceGeometry
from unet.device import Precision, prepare_model, seed_everything
from unet.epoch import train_epoch
from unet.fit import fit
from unet.loading import before_forking_workers
from unet.losses import build_loss
from unet.model import build_model
from unet.optim import build_optimizer

# The U-Net of the shipped studies' baselines (depth 4 would be the issue's; 3 keeps the CPU run short).
MODEL = ModelConfig(in_channels=3, num_classes=1, depth=3, base_filters=16)
# Steps of one trial of the shipped studies: 96 images / batch 16 x 10 epochs (studies/unet-lr.yaml).
SHIPPED_TRIAL_STEPS = 96 // 16 * 10


def loader_rate(dataset: Any, *, items: int, batch_size: int, workers: int, prefetch: int = 2) -> float:
    """Items/s the training DataLoader delivers (after its first batch, which starts the workers)."""
    extra: dict[str, Any] = {"prefetch_factor": prefetch, "persistent_workers": True} if workers else {}
    if workers:
        before_forking_workers()  # as fit's loader does (unet.loading)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, **extra)
    batches = max(2, items // batch_size)
    seen = 0
    started = None
    while seen < batches:
        for _ in loader:
            seen += 1
            if started is None:
                started = time.perf_counter()
            if seen >= batches:
                break
    assert started is not None
    return (batches - 1) * batch_size / (time.perf_counter() - started)


def step_rate(config: TrainConfig, batches: list[tuple[torch.Tensor, torch.Tensor]], rounds: int) -> float:
    """Training images/s of ``train_epoch`` on batches already in memory (no loading cost)."""
    seed_everything(0)
    cpu = torch.device("cpu")
    model, memory_format = prepare_model(
        build_model(config.model), cpu, channels_last=True, compile_model=False
    )
    optimizer = build_optimizer(model.parameters(), config)
    criterion = build_loss(config.loss, num_classes=1)
    precision = Precision(cpu, enabled=False)
    rates = []
    for _ in range(rounds + 1):  # the first round warms up
        started = time.perf_counter()
        stats = train_epoch(model, criterion, optimizer, precision, batches, config, cpu, memory_format)
        rates.append(stats.images / (time.perf_counter() - started))
    return statistics.median(rates[1:])


def geometry_rate(batches: list[tuple[torch.Tensor, torch.Tensor]], rounds: int) -> float:
    """Images/s of the device geometry (flips, rotations) on CPU batches."""
    geometry, generator = DeviceGeometry(), torch.Generator().manual_seed(0)
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        n = sum(geometry.apply(x, y, generator)[0].shape[0] for x, y in batches)
        rates.append(n / (time.perf_counter() - started))
    return statistics.median(rates)


def fit_on_one_core(config: TrainConfig, train: Any, val: Any, rounds: int) -> dict[str, float]:
    """A fit epoch's images/s with 0 and 1 loader workers, the process (and its workers) on one core.

    One core is what a CPU trial reserves by default (``cpus_per_trial: 1``): the question is whether a
    worker process on the same core beats loading in-process. Rounds alternate between the two.
    """
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        rates: dict[str, list[float]] = {"workers_0": [], "workers_1": []}
        for _ in range(rounds):
            for workers in (0, 1):
                result = fit(config.replace(epochs=1, num_workers=workers), train, val)
                rates[f"workers_{workers}"].append(result.history[0].images_per_s)
    finally:
        os.sched_setaffinity(0, saved)
    return {k: round(statistics.median(v), 1) for k, v in rates.items()}


def compile_cost(config: TrainConfig, batch: tuple[torch.Tensor, torch.Tensor], steps: int) -> dict[str, Any]:
    """Seconds of the first compiled step beyond an eager one, steady speedup, steps to break even."""
    times: dict[str, list[float]] = {}
    for name in ("eager", "compiled"):
        seed_everything(0)
        model, _ = prepare_model(
            build_model(config.model),
            torch.device("cpu"),
            channels_last=True,
            compile_model=name == "compiled",
        )
        optimizer = build_optimizer(model.parameters(), config)
        criterion = build_loss(config.loss, num_classes=1)
        x, y = batch
        times[name] = []
        for _ in range(steps + 1):
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            criterion(model(x), y).backward()
            optimizer.step()
            times[name].append(time.perf_counter() - started)
    first_extra = times["compiled"][0] - times["eager"][0]
    eager, compiled = statistics.median(times["eager"][1:]), statistics.median(times["compiled"][1:])
    saved = eager - compiled
    return {
        "first_step_extra_s": round(first_extra, 2),
        "eager_step_s": round(eager, 4),
        "compiled_step_s": round(compiled, 4),
        "speedup": round(eager / compiled, 3),
        "break_even_steps": round(first_extra / saved) if saved > 0 else None,
        "shipped_trial_steps": SHIPPED_TRIAL_STEPS,
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    """All figures of the section, measured in this one run (ratios are comparable, absolutes noisy)."""
    size, items, rounds = (32, 32, 1) if quick else (128, 400, 3)
    batch_size = 8
    torch.set_num_threads(1)  # one core each for the loader and the step: rates per core
    train, _ = folder_datasets(DSB, patch_size=size)
    train_device, _ = folder_datasets(DSB, patch_size=size, geometry_on="device")
    loader: dict[str, float] = {
        "in_process": loader_rate(train, items=items, batch_size=batch_size, workers=0)
    }
    for workers in (1, 2):
        for prefetch in (2, 4):
            loader[f"workers_{workers}_prefetch_{prefetch}"] = loader_rate(
                train, items=items, batch_size=batch_size, workers=workers, prefetch=prefetch
            )
    loader["in_process_geometry_on_device"] = loader_rate(
        train_device, items=items, batch_size=batch_size, workers=0
    )
    loader = {k: round(v, 1) for k, v in loader.items()}
    batches = list(DataLoader(train, batch_size=batch_size, shuffle=True))[: max(2, items // batch_size)]
    config = TrainConfig(model=MODEL, batch_size=batch_size, device="cpu")
    step = step_rate(config, batches, rounds)
    data = TensorDataset(*(torch.cat(parts) for parts in zip(*batches, strict=True)))
    fit_rates = fit_on_one_core(config, train, data, rounds)
    figures: dict[str, Any] = {
        "patch_size": size,
        "batch_size": batch_size,
        "model": f"depth {MODEL.depth}, {MODEL.base_filters} filters",
        "loader_items_per_s": loader,
        "step_images_per_s": round(step, 1),
        "loader_per_core_over_step": round(loader["in_process"] / step, 2),
        "device_geometry_images_per_s_on_cpu": round(geometry_rate(batches, rounds), 1),
        "fit_epoch_images_per_s": fit_rates,
        "fit_in_process_over_1_worker": round(fit_rates["workers_0"] / fit_rates["workers_1"], 3),
    }
    # Compiling takes minutes on a loaded 2-core machine: the CI run only keeps the rest working.
    figures["compile"] = None if quick else compile_cost(config, batches[0], steps=10)
    return figures
