"""``python -m bench --only throughput``: ``fit`` against a bare loop, FLOP/s against matmul."""

from __future__ import annotations

from bench.section import Figures, Meta, RunOptions


class ThroughputSection:
    """Training throughput on this machine's CPU (a GPU's comes from ``bench/device_check.sh``)."""

    name = "throughput"

    def run(self, options: RunOptions) -> Figures:
        from bench.throughput import measure

        if options.quick:
            return measure.run(rounds=1, size=32, images=8, matmul_n=256)
        return measure.run(rounds=6)  # the median of 6 rounds rides out other users' bursts better

    def markdown(self, figures: Figures, meta: Meta) -> str:
        return markdown(figures)


def markdown(t: Figures) -> str:
    """fit against the bare loop, and FLOP/s against the matmul and one convolution."""
    ips, spread = t["images_per_s"], t.get("images_per_s_spread", {})
    noise = t.get("fit_over_bare_spread")

    def rate(name: str) -> str:
        if name not in spread:
            return str(ips.get(name, "-"))
        s = spread[name]
        return f"{s['median']} ({s['min']} - {s['max']})"

    shares = t.get("fit_epoch_shares") or {}
    labels = {"train_s": "training steps", "val_s": "validation", "evidence_s": "evidence",
              "data_wait_s": "waiting for data"}  # fmt: skip
    split = ", ".join(f"{labels.get(k, k)} {v:.1%}" for k, v in shares.items())
    lines = [
        "## Training throughput\n",
        f"U-Net depth 3, 16 filters, {t['images_per_round']} images of {t['image_size']} px per round, "
        f"{t['rounds']} measured rounds interleaving fit and the bare loop (fit first, then bare first, "
        f"...: both see the same load), {t['threads']} threads, {t.get('precision', 'float32')}. Both "
        "loops: same loader, memory format (channels_last), autocast and loss.\n",
        "| loop | images/s median (min - max) | GFLOP/s (median) |",
        "|---|---|---|",
        f"| fit (training pass) | {rate('fit')} | {t['fit_gflops']} |",
        f"| bare loop | {rate('bare')} | {t['bare_gflops']} |",
    ]
    if "bare_contiguous" in ips:
        lines.append(f"| bare loop (contiguous) | {rate('bare_contiguous')} | - |")
    lines += [
        f"| float32 matmul {t['matmul_n']} x {t['matmul_n']} (best of 5) | - | {t['matmul_gflops']} |",
        f"| one 3 x 3 convolution, 64 channels, {t['image_size']} px (best of 20) | - | "
        f"{t['conv3x3_gflops']} |",
        "",
        f"fit / bare, round by round: **{t['fit_over_bare']}**"
        + (f" (min {noise['min']}, max {noise['max']})" if noise else "")
        + f" (goal >= {t.get('goal', 0.95)}). fit's epoch: {split or 'not recorded'}. fit's FLOP/s: "
        f"**{t['fit_share_of_matmul']:.0%}** of the matmul's and "
        f"**{t['fit_share_of_conv3x3']:.0%}** of the single convolution's "
        f"({t['train_gflop_per_image']} GFLOP per training image: 3 x the forward convolutions, "
        "counted as direct convolutions; oneDNN's kernels may need fewer multiplications, "
        "e.g. Winograd, which is how convolutions can beat the matmul).\n",
    ]
    return "\n".join(lines)
