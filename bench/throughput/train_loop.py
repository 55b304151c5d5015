"""Benchmark: ``unet.fit``'s training throughput against a bare PyTorch loop on the same model and batches.

    python -m bench.throughput.train_loop [--out bench/results] [--epochs 4] [--size 96] [--images 48]
        [--contiguous]

Like with like: both loops train the same U-Net from the same seeded weights on the same loader
(``unet.loading.make_train_loader``: same batches, same order), in the same memory format
(``unet.device.prepare_model``), under the same autocast and gradient scaler (``unet.device.Precision``),
on the same loss (``unet.losses.build_loss`` with the config's settings) and optimizer. The bare loop is
forward, loss, backward, step: no evidence, gradient norms, finite-loss check or progress. fit's images/s
is its training pass only (``EpochRecord.images_per_s``, validation apart), the bare loop's its whole
epoch.

The machine is shared and its load changes by the second, so rounds interleave the loops (fit then bare,
bare then fit, ...) and the ratio is taken round by round: each fit epoch against the bare epoch beside it,
under the same load. The figures are the median ratio and its min and max over the measured rounds (the
noise), the images/s of each loop (min/median/max), and where fit's epochs spent their time
(``EpochRecord``'s ``train_s``, ``val_s``, ``evidence_s``, ``data_wait_s``). ``--contiguous`` also times
the bare loop in the contiguous memory format (channels_last's speedup). Figures go to
``OUT/train_loop.json`` and ``OUT/train_loop.md``. Goal: fit >= 0.95 of the bare loop.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from unet.config import ModelConfig, TrainConfig
from unet.device import Precision, prepare_model
from unet.fit import fit, resolve_device, seed_everything
from unet.loading import make_train_loader
from unet.losses import build_loss
from unet.model import build_model
from unet.optim import build_optimizer

# The U-Net both loops train (bench.throughput.measure counts its FLOPs).
MODEL = ModelConfig(in_channels=3, num_classes=1, depth=3, base_filters=16)
GOAL = 0.95
# EpochRecord's parts of an epoch's wall time, reported as shares of it.
TIME_PARTS = ("train_s", "val_s", "evidence_s", "data_wait_s")


def make_batches(images: int, size: int, seed: int, *, channels: int = 3) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(images, channels, size, size, generator=g)
    y = (torch.rand(images, size, size, generator=g) > 0.8).long()
    return TensorDataset(x, y)


def bench_config(
    *,
    model: ModelConfig = MODEL,
    device: str = "cpu",
    batch_size: int = 8,
    channels_last: bool | None = None,
) -> TrainConfig:
    """The one-epoch training config both loops use."""
    return TrainConfig(
        model=model,
        batch_size=batch_size,
        epochs=1,
        loss="dice_bce",
        device=device,
        num_workers=0,
        channels_last=channels_last,
    )


def bare_epoch(config: TrainConfig, data: TensorDataset, val: TensorDataset) -> float:
    """Images/s of one epoch of the plainest loop on ``fit``'s model, loader, format, autocast and loss."""
    device = resolve_device(config.device)
    seed_everything(config.seed)
    channels_last = config.channels_last if config.channels_last is not None else True
    model, memory_format = prepare_model(
        build_model(config.model), device, channels_last=channels_last, compile_model=False
    )
    criterion = build_loss(config.loss, num_classes=config.model.num_classes, pos_weight=config.pos_weight)
    criterion = criterion.to(device)
    optimizer = build_optimizer(model.parameters(), config)
    precision = Precision(device, enabled=config.mixed_precision)
    loader = make_train_loader(config, data, val, device)
    model.train()
    sync(device)
    start = time.perf_counter()
    n = 0
    for x, y in loader:
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        bare_step(model, criterion, optimizer, precision, x, y.to(device, non_blocking=True))
        n += x.shape[0]
    sync(device)
    return n / (time.perf_counter() - start)


def bare_step(
    model: torch.nn.Module,
    criterion: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    x: torch.Tensor,
    y: torch.Tensor,
) -> None:
    """One training step with nothing of fit's around it: forward, loss, backward, optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    with precision.autocast():
        logits = model(x)
    precision.scaler.scale(criterion(logits.float(), y)).backward()
    precision.scaler.step(optimizer)
    precision.scaler.update()


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """min, median and max of ``values``, rounded."""
    return {
        "min": round(min(values), digits),
        "median": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


def run(
    epochs: int,
    size: int,
    images: int,
    *,
    model: ModelConfig = MODEL,
    device: str = "cpu",
    batch_size: int = 8,
    contiguous: bool = False,
) -> dict[str, Any]:
    """Interleaved rounds of fit and the bare loop (the first round warms up and is dropped).

    Args:
        epochs: measured rounds, each one fit epoch and one bare epoch.
        size: image side in pixels.
        images: training images per epoch.
        model: the U-Net both train.
        device: where both train.
        batch_size: images per step.
        contiguous: also time the bare loop in the contiguous memory format each round.
    """
    config = bench_config(model=model, device=device, batch_size=batch_size)
    data = make_batches(images, size, seed=0, channels=model.in_channels)
    val = make_batches(batch_size, size, seed=1, channels=model.in_channels)
    rates: dict[str, list[float]] = {"fit": [], "bare": []}
    if contiguous:
        rates["bare_contiguous"] = []
    ratios: list[float] = []
    shares: dict[str, list[float]] = {part: [] for part in TIME_PARTS}
    for index in range(epochs + 1):
        # Every loop starts each round from the same fresh weights, as fit() does: weights trained for
        # many epochs on noise drift into ranges (denormals) that are slower to compute on a CPU.
        order = ("fit", "bare") if index % 2 == 0 else ("bare", "fit")
        round_rates: dict[str, float] = {}
        for name in order:
            if name == "fit":
                record = fit(config, data, val).history[0]
                round_rates["fit"] = record.images_per_s
            else:
                round_rates["bare"] = bare_epoch(config, data, val)
        if contiguous:
            round_rates["bare_contiguous"] = bare_epoch(config.replace(channels_last=False), data, val)
        if index == 0:
            continue  # warm-up: first kernels, allocator
        for name, value in round_rates.items():
            rates[name].append(value)
        ratios.append(round_rates["fit"] / round_rates["bare"])
        for part in TIME_PARTS:
            shares[part].append(getattr(record, part) / record.seconds)
    figures: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "device": device,
        "cpus": torch.get_num_threads(),
        "torch": torch.__version__,
        "image_size": size,
        "images_per_epoch": images,
        "batch_size": batch_size,
        "rounds": epochs,
        "interleaved": True,
        "precision": Precision(resolve_device(device), enabled=config.mixed_precision).describe(),
        "images_per_s": {name: round(statistics.median(values), 2) for name, values in rates.items()},
        "images_per_s_spread": {name: spread(values, 2) for name, values in rates.items()},
        "fit_over_bare": round(statistics.median(ratios), 3),
        "fit_over_bare_spread": spread(ratios),
        "goal": GOAL,
        "fit_epoch_shares": {part: round(statistics.median(values), 3) for part, values in shares.items()},
        "raw": {"images_per_s": rates, "fit_over_bare": ratios},
    }
    if contiguous:
        figures["channels_last_speedup"] = round(
            statistics.median(b / c for b, c in zip(rates["bare"], rates["bare_contiguous"], strict=True)), 3
        )
    return figures


def markdown(figures: dict[str, Any]) -> str:
    ips, noise = figures["images_per_s_spread"], figures["fit_over_bare_spread"]
    rows = "".join(f"| {k} | {v['min']} | {v['median']} | {v['max']} |\n" for k, v in ips.items())
    split = ", ".join(f"{k} {v:.1%}" for k, v in figures["fit_epoch_shares"].items())
    return (
        f"# Training loop throughput ({figures['date']}, {figures['machine']}, {figures['device']}, "
        f"torch {figures['torch']}, {figures['cpus']} threads, {figures['precision']})\n\n"
        f"{figures['rounds']} interleaved rounds of {figures['images_per_epoch']} images of "
        f"{figures['image_size']} px, batch {figures['batch_size']}.\n\n"
        "| loop | images/s min | median | max |\n|---|---|---|---|\n"
        + rows
        + f"\nfit / bare, round by round: median **{figures['fit_over_bare']}** (min {noise['min']}, "
        f"max {noise['max']}; goal >= {figures['goal']})\n"
        + f"fit's epoch: {split} of its wall time (median over rounds)\n"
        + (
            f"channels_last / contiguous (bare): **{figures['channels_last_speedup']}**\n"
            if "channels_last_speedup" in figures
            else ""
        )
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.throughput.train_loop", description=__doc__.splitlines()[0]
    )
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--epochs", type=int, default=4, help="measured rounds (after one warm-up round)")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--contiguous", action="store_true", help="also time the bare loop in contiguous format")
    args = p.parse_args(argv)
    figures = run(args.epochs, args.size, args.images, contiguous=args.contiguous)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_loop.json").write_text(json.dumps(figures, indent=2) + "\n")
    md = markdown(figures)
    (args.out / "train_loop.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
