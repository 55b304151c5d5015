"""Benchmark: ``unet.fit``'s training throughput against a bare PyTorch loop on the same model and batches.

    python -m bench.train_loop [--out bench/results] [--epochs 4] [--size 96] [--images 48]

Both loops train the same U-Net on the same in-memory batches (same optimizer, loss, batch size and memory
format); the bare loop has no metrics, gradient norms or checks. Epochs alternate between the two loops so
that machine noise hits both alike, and the median images/s of each is compared. It also measures
channels_last against the contiguous format in the bare loop. Figures go to ``OUT/train_loop.json`` and
``OUT/train_loop.md``. Goal: fit >= 0.95 of the bare loop.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from unet.config import ModelConfig, TrainConfig
from unet.fit import fit, seed_everything
from unet.losses import build_loss
from unet.model import build_model
from unet.optim import build_optimizer

# The U-Net both loops train (bench.throughput counts its FLOPs).
MODEL = ModelConfig(in_channels=3, num_classes=1, depth=3, base_filters=16)


def make_batches(images: int, size: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(images, 3, size, size, generator=g)
    y = (torch.rand(images, size, size, generator=g) > 0.8).long()
    return TensorDataset(x, y)


def bare_epoch(
    config: TrainConfig,
    data: TensorDataset,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    memory_format: torch.memory_format,
) -> float:
    """Images/s of one epoch of the plainest loop: forward, loss, backward, step."""
    loss_fn = build_loss(config.loss, num_classes=1)
    loader = DataLoader(data, batch_size=config.batch_size, shuffle=True)
    model.train()
    start = time.perf_counter()
    n = 0
    for x, y in loader:
        x = x.contiguous(memory_format=memory_format)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        n += x.shape[0]
    return n / (time.perf_counter() - start)


def run(epochs: int, size: int, images: int) -> dict[str, object]:
    config = TrainConfig(
        model=MODEL,
        batch_size=8,
        epochs=1,
        loss="dice_bce",
        device="cpu",
    )
    data = make_batches(images, size, seed=0)
    val = make_batches(8, size, seed=1)
    results: dict[str, list[float]] = {"fit": [], "bare_channels_last": [], "bare_contiguous": []}
    formats = {"bare_channels_last": torch.channels_last, "bare_contiguous": torch.contiguous_format}
    for _ in range(epochs + 1):  # the first round warms up and is dropped
        # Every loop starts each round from the same fresh weights, as fit() does: weights trained for
        # many epochs on noise drift into ranges (denormals) that are slower to compute on a CPU.
        out = fit(config, data, val)
        results["fit"].append(out.history[0].images_per_s)
        for name, fmt in formats.items():
            seed_everything(config.seed)
            model = build_model(config.model).to(memory_format=fmt)
            results[name].append(
                bare_epoch(config, data, model, build_optimizer(model.parameters(), config), fmt)
            )
    med = {k: statistics.median(v[1:]) for k, v in results.items()}
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": torch.get_num_threads(),
        "torch": torch.__version__,
        "image_size": size,
        "images_per_epoch": images,
        "batch_size": config.batch_size,
        "rounds": epochs,
        "images_per_s": {k: round(v, 2) for k, v in med.items()},
        "fit_over_bare": round(med["fit"] / med["bare_channels_last"], 3),
        "channels_last_speedup": round(med["bare_channels_last"] / med["bare_contiguous"], 3),
        "raw": results,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_loop", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--epochs", type=int, default=4, help="measured rounds (after one warm-up round)")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--images", type=int, default=48)
    args = p.parse_args(argv)
    figures = run(args.epochs, args.size, args.images)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_loop.json").write_text(json.dumps(figures, indent=2) + "\n")
    ips = figures["images_per_s"]
    md = (
        f"# Training loop throughput ({figures['date']}, {figures['machine']}, torch {figures['torch']}, "
        f"{figures['cpus']} threads)\n\n| loop | images/s |\n|---|---|\n"
        + "".join(f"| {k} | {v} |\n" for k, v in ips.items())
        + f"\nfit / bare (both channels_last): **{figures['fit_over_bare']}** (goal >= 0.95)\n"
        + f"channels_last / contiguous (bare): **{figures['channels_last_speedup']}**\n"
    )
    (args.out / "train_loop.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
