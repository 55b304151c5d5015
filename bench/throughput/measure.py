"""Training throughput: ``fit`` against a bare PyTorch loop; achieved FLOP/s against the CPU's matmul FLOP/s.

The fit/bare ratio comes from ``bench.throughput.train_loop.run`` (same model, loader, memory format,
autocast, loss and optimizer; rounds interleave the loops and the ratio is taken round by round, with its min
and max over the rounds; fit's epoch split into training steps, validation, evidence and waiting for data).
Achieved FLOP/s is ``3 x conv_flops x images/s``: a training step costs about three forward passes (the
forward, and the backward's two products per layer, for the input and the weight gradients), and
``unet.cost.conv_flops`` counts the convolutions of one forward pass. The machine's reference is the best of a
few ``torch.matmul`` of two 2048 x 2048 float32 matrices (``2 n**3`` FLOPs each), on the same threads; the
ratio says how close training gets to what this CPU does on the friendliest kernel there is. Convolution
kernels can beat it (Winograd needs fewer multiplications than the direct count), so the best "effective"
FLOP/s of one 3 x 3 convolution at the same image size is measured too: the ceiling a U-Net's convolutions can
actually reach on this machine.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from bench.throughput import train_loop
from unet.cost import conv_flops
from unet.device import prepare_model
from unet.model import build_model


def matmul_flops(*, n: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of ``repeats`` float32 ``n x n`` matrix products, after one warm-up product."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def conv_flops_reference(*, size: int, channels: int = 64, batch: int = 8, repeats: int = 20) -> float:
    """Best "effective" FLOP/s of one 3 x 3 convolution's forward pass (direct-convolution FLOPs / time).

    The convolution kernels (oneDNN on x86) may use Winograd, which needs fewer multiplications than the
    direct count, so this can exceed the matmul figure: it is the ceiling a U-Net's convolutions can reach.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=g).contiguous(memory_format=torch.channels_last)
    conv, _ = prepare_model(
        torch.nn.Conv2d(channels, channels, 3, padding=1), x.device, channels_last=True, compile_model=False
    )
    best = float("inf")
    with torch.no_grad():
        conv(x)
        for _ in range(repeats):
            started = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - started)
    return 2 * batch * size * size * channels * channels * 9 / best


def run(
    *, rounds: int = 4, size: int = 96, images: int = 48, matmul_n: int = 2048, contiguous: bool = False
) -> dict[str, Any]:
    """Throughput figures: images/s of each loop, fit/bare, and FLOP/s of fit against matmul.

    Args:
        rounds: measured rounds of ``bench.throughput.train_loop`` (after its warm-up round).
        size: image side in pixels.
        images: training images per round.
        matmul_n: side of the reference matrices.
        contiguous: also time the bare loop in the contiguous memory format (channels_last's speedup).
    """
    loop = train_loop.run(rounds, size, images, contiguous=contiguous)
    flops_per_image = 3 * conv_flops(build_model(train_loop.MODEL), size, size)
    peak = matmul_flops(n=matmul_n)
    conv_peak = conv_flops_reference(size=size)
    fit_flops = flops_per_image * loop["images_per_s"]["fit"]
    bare_flops = flops_per_image * loop["images_per_s"]["bare"]
    return {
        "threads": torch.get_num_threads(),
        "image_size": size,
        "images_per_round": images,
        "rounds": rounds,
        "interleaved": loop["interleaved"],
        "precision": loop["precision"],
        "images_per_s": loop["images_per_s"],
        "images_per_s_spread": loop["images_per_s_spread"],
        "fit_over_bare": loop["fit_over_bare"],
        "fit_over_bare_spread": loop["fit_over_bare_spread"],
        "goal": loop["goal"],
        "fit_epoch_shares": loop["fit_epoch_shares"],
        "channels_last_speedup": loop.get("channels_last_speedup"),
        "train_gflop_per_image": round(flops_per_image / 1e9, 4),
        "fit_gflops": round(fit_flops / 1e9, 2),
        "bare_gflops": round(bare_flops / 1e9, 2),
        "matmul_n": matmul_n,
        "matmul_gflops": round(peak / 1e9, 2),
        "fit_share_of_matmul": round(fit_flops / peak, 3),
        "conv3x3_gflops": round(conv_peak / 1e9, 2),
        "fit_share_of_conv3x3": round(fit_flops / conv_peak, 3),
        "raw": loop["raw"],
    }
