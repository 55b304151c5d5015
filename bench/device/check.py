"""The GPU device check behind ``bench/device_check.sh``: one run, at most 5 minutes, one JSON file.

    python -m bench.device.check [--out device_check.json] [--device cuda|cpu] [--tiny]

On a CUDA machine it measures, in this order (each part bounded in time, a failing part recorded with its
error while the others still run):

1. ``fit`` against a bare mixed-precision loop at 256 x 256 (``bench.throughput.train_loop``: interleaved
   rounds, the ratio's min/median/max, fit's epoch split; goal >= 0.95), and fit's host syncs per step;
2. aggregate images/s, GPU utilisation and peak memory per trial with 1, 2 and 4 trials packed on the GPU
   (separate processes, as Ray runs them);
3. loader-only items/s of the folder pipeline with ``num_workers: auto`` (and in-process), prefetch 2 and 4;
4. a 4-trial smoke study through Ray on the GPU with ``gpus_per_trial: 0.25``.

Without CUDA it exits with status 2 and one line, unless ``--device cpu`` (the tests run every part that
way, at ``--tiny`` sizes). Nothing here needs the repository's data folder: images are generated.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import TensorDataset

from bench.device.tools import UtilisationSampler, run_in_own_session
from bench.paths import REPO
from bench.throughput import train_loop
from unet.config import ModelConfig, TrainConfig
from unet.device import Precision, prepare_model, seed_everything
from unet.fit import fit
from unet.losses import build_loss
from unet.model import build_model
from unet.optim import build_optimizer

# The U-Net: depth 4, 16 filters, on 256 x 256 patches.
MODEL = ModelConfig(in_channels=1, num_classes=1, depth=4, base_filters=16)


class Sizes:
    """How big each part is: the real check, or ``tiny`` for the CPU tests."""

    def __init__(self, tiny: bool) -> None:
        self.size = 16 if tiny else 256  # tiny: the smallest side a depth-4 U-Net takes
        self.batch = 4 if tiny else 16
        self.images = 4 if tiny else 256  # per fit/bare epoch (tiny: one step)
        self.rounds = 1 if tiny else 3
        # Training time of each packed-trial process (tiny: its two counted steps are enough).
        self.pack_seconds = 0.0 if tiny else 15.0
        self.packing = (2,) if tiny else (1, 2, 4)  # tiny: one round, with more than one process
        self.loader_items = 16 if tiny else 512
        self.folder_images = 6 if tiny else 32
        self.study_epochs = 1 if tiny else 3
        # The real check must fit in 5 minutes; the tiny one runs on loaded 2-core CI machines.
        self.study_timeout = 900.0 if tiny else 150.0


def batches(n: int, size: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g)
    return TensorDataset(x, (x[:, 0] > 0.8).long())


def fit_vs_bare(device: torch.device, s: Sizes) -> dict[str, Any]:
    """``bench.throughput.train_loop``'s interleaved comparison on the device, and fit's syncs per step."""
    figures = train_loop.run(s.rounds, s.size, s.images, model=MODEL, device=str(device), batch_size=s.batch)
    config = train_loop.bench_config(model=MODEL, device=str(device), batch_size=s.batch)
    data, val = batches(s.images, s.size, 0), batches(s.batch, s.size, 1)
    figures.pop("raw")
    return {**figures, "syncs_per_step": syncs_per_step(config, data, val, device)}


def syncs_per_step(
    config: TrainConfig, data: TensorDataset, val: TensorDataset, device: torch.device
) -> float | None:
    """Host syncs per training step of one ``fit`` epoch, between its first and last step (None off CUDA).

    torch's sync debug mode warns at each operation that makes the host wait for the GPU (``.item()``, a
    copy to the host, ...); the progress callback marks the steps, so the epoch's start and end (its
    once-per-epoch reads, validation) are left out. ``unet.epoch`` reads one flag every ``SYNC_EVERY``
    steps: 1 / SYNC_EVERY is the floor.
    """
    if device.type != "cuda":
        return None
    marks: list[int] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fit(config, data, val, on_batch=lambda step, total: marks.append(len(caught)))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    steps = len(marks) - 1
    return round((marks[-1] - marks[0]) / steps, 3) if steps > 0 else None


def _packed_trial(device_name: str, size: int, batch: int, seconds: float, queue: Any) -> None:
    """One packed trial's process: train for ``seconds`` and report images/s and peak memory."""
    device = torch.device(device_name)
    config = TrainConfig(model=MODEL, batch_size=batch, device=device_name)
    seed_everything(0)
    model, fmt = prepare_model(build_model(config.model), device, channels_last=True, compile_model=False)
    optimizer = build_optimizer(model.parameters(), config)
    criterion = build_loss(config.loss, num_classes=1).to(device)
    precision = Precision(device, enabled=True)
    x = torch.randn(batch, 1, size, size, device=device).contiguous(memory_format=fmt)
    y = (x[:, 0] > 0.8).long()
    images, start, warm = 0, time.perf_counter(), None
    # At least two counted steps, however slow the machine (the first step, autotuning, is not counted).
    while time.perf_counter() - start < seconds or images < 2 * batch:
        train_loop.bare_step(model, criterion, optimizer, precision, x, y)
        if warm is None:  # the first step (autotuning) is not counted
            train_loop.sync(device)
            warm = time.perf_counter()
        else:
            images += batch
    train_loop.sync(device)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    queue.put({"images_per_s": images / (time.perf_counter() - (warm or start)), "peak_bytes": peak})


def packing(device: torch.device, s: Sizes) -> dict[str, Any]:
    context = mp.get_context("spawn")  # CUDA cannot be used in forked children
    out: dict[str, Any] = {}
    for n in s.packing:
        queue = context.Queue()
        sampler = UtilisationSampler(device)
        procs = [
            context.Process(target=_packed_trial, args=(str(device), s.size, s.batch, s.pack_seconds, queue))
            for _ in range(n)
        ]
        with sampler:
            for p in procs:
                p.start()
            results = [queue.get(timeout=s.pack_seconds + 120) for _ in procs]
            for p in procs:
                p.join()
        out[str(n)] = {
            "aggregate_images_per_s": round(sum(r["images_per_s"] for r in results), 1),
            "per_trial_images_per_s": [round(r["images_per_s"], 1) for r in results],
            "peak_memory_mib_per_trial": [round(r["peak_bytes"] / 2**20, 1) for r in results],
            "gpu_utilisation_percent": sampler.summary(),
        }
    return out


def write_folder(root: Path, n: int, size: int) -> Path:
    """A dataset folder of ``n`` generated gray PNGs and masks (``images/``, ``masks/``)."""
    import cv2

    from unet.data import synthetic_datasets

    train, _ = synthetic_datasets(n_train=n, n_val=1, size=size, seed=0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image, mask = train[i]
        cv2.imwrite(str(root / "images" / f"{i:03d}.png"), (image[0].clamp(0, 1) * 255).byte().numpy())
        cv2.imwrite(str(root / "masks" / f"{i:03d}.png"), (mask.numpy() * 255).astype(np.uint8))
    return root


def loader_only(device: torch.device, s: Sizes, workdir: Path) -> dict[str, Any]:
    from bench.pipeline.measure import loader_rate
    from unet.data import folder_datasets
    from unet.loading import resolve_num_workers

    root = write_folder(workdir / "folder", s.folder_images, s.size + s.size // 4)
    train, _ = folder_datasets(root, patch_size=s.size)
    auto = resolve_num_workers(TrainConfig(), device)
    rates = {"in_process": loader_rate(train, items=s.loader_items, batch_size=s.batch, workers=0)}
    for prefetch in (2, 4):
        if auto > 0:
            rates[f"auto_{auto}_workers_prefetch_{prefetch}"] = loader_rate(
                train, items=s.loader_items, batch_size=s.batch, workers=auto, prefetch=prefetch
            )
    return {"auto_workers": auto, "items_per_s": {k: round(v, 1) for k, v in rates.items()}}


def smoke_study(device: torch.device, s: Sizes, workdir: Path) -> dict[str, Any]:
    """4 trials through ``python -m search.run --backend ray`` with ``gpus_per_trial: 0.25``."""
    import optuna

    from search.outcome import GPU_FALLBACK, GPU_IDS

    spec = yaml.safe_load((REPO / "studies" / "unet-smoke.yaml").read_text())
    spec["name"] = "device-check"
    spec["data"]["synthetic"] |= {"size": s.size, "n_train": 4 * s.batch, "n_val": s.batch}
    spec["budget"] = {"n_trials": 4, "timeout": None, "max_epochs": s.study_epochs}
    spec["execution"] = {"concurrency": 4, "cpus_per_trial": 1, "gpus_per_trial": 0.25, "max_retries": 0}
    spec["fixed"]["device"] = "auto"
    path = workdir / "device-check.yaml"
    path.write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{workdir / 'device-check.db'}"
    started = time.perf_counter()
    command = [sys.executable, "-m", "search.run", "--study", str(path), "--storage", url, "--backend", "ray"]
    returncode, output = run_in_own_session(
        command, cwd=workdir, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=s.study_timeout
    )
    try:
        trials = optuna.load_study(study_name="device-check", storage=url).get_trials(deepcopy=False)
    except KeyError:  # the run failed before it created the study: its output says why
        trials = []
    return {
        "exit_status": returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "states": [t.state.name for t in trials],
        "gpu_ids": [t.user_attrs.get(GPU_IDS) for t in trials],
        "gpu_fallback": [t.user_attrs.get(GPU_FALLBACK) for t in trials],
        "output_tail": output[-1500:] if returncode else None,
    }


def run(device: torch.device, *, tiny: bool, say: Callable[[str], None] = print) -> dict[str, Any]:
    s = Sizes(tiny)
    figures: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "tiny": tiny,
        "seconds": {},
    }
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        parts: dict[str, Callable[[], dict[str, Any]]] = {
            "fit_vs_bare": lambda: fit_vs_bare(device, s),
            "packing": lambda: packing(device, s),
            "loader_only": lambda: loader_only(device, s, Path(tmp)),
            "smoke_study": lambda: smoke_study(device, s, Path(tmp)),
        }
        for name, part in parts.items():
            say(f"[device_check] {name} ...")
            started = time.perf_counter()
            try:
                figures[name] = part()
            except Exception as e:  # one failing part must not lose the others' figures
                traceback.print_exc()
                figures[name] = {"error": f"{type(e).__name__}: {str(e).strip()[:300]}"}
            figures["seconds"][name] = round(time.perf_counter() - started, 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.device.check", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("device_check.json"), help="the JSON file written")
    p.add_argument("--device", default="cuda", help="cuda (the check) or cpu (tests of the script)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (seconds; figures meaningless)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "error: the device check needs a CUDA GPU but torch sees none "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}): run it on a GPU machine "
            "with the CUDA build of torch",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    figures = run(device, tiny=args.tiny, say=lambda m: print(m, file=sys.stderr, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"[device_check] figures in {args.out}", file=sys.stderr)
    failed = [k for k, v in figures.items() if isinstance(v, dict) and "error" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
