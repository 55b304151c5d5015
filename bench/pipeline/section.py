"""``python -m bench --only pipeline``: can the data pipeline feed the training step? (``measure``)."""

from __future__ import annotations

import json

from bench.paths import RESULTS
from bench.section import Figures, Meta, RunOptions

# What bench/device_check.sh wrote last, beside these results (the GPU side of the ratios).
DEVICE_CHECK = RESULTS / "device_check.json"


class PipelineSection:
    """Loader items/s per core and with workers against the training step, on the real nuclei images."""

    name = "pipeline"

    def run(self, options: RunOptions) -> Figures:
        from bench.pipeline import measure

        return measure.run(quick=options.quick)

    def markdown(self, figures: Figures, meta: Meta) -> str:
        return markdown(figures)


def device_check_line() -> str:
    """What ``bench/device_check.sh`` measured on a GPU (its JSON beside these results), or "none"."""
    if not DEVICE_CHECK.exists():
        return (
            "**Device check: none was run** (no GPU was available to this run); the GPU side of these "
            "ratios comes from `bash bench/device_check.sh` on a CUDA machine (README, GPUs)."
        )
    d = json.loads(DEVICE_CHECK.read_text())
    fit = d.get("fit_vs_bare", {})
    packed = {
        n: p.get("aggregate_images_per_s") for n, p in d.get("packing", {}).items() if isinstance(p, dict)
    }
    loader = d.get("loader_only", {}).get("items_per_s")
    return (
        f"**Device check** ({d.get('date')}, {d.get('device_name')}): fit / bare AMP loop at "
        f"{fit.get('image_size')} px: {fit.get('fit_over_bare')} (goal 0.95; {fit.get('images_per_s')}); "
        f"aggregate images/s by trials packed on the GPU: {packed}; loader items/s: {loader}; "
        f"Ray smoke study: {d.get('smoke_study', {}).get('states')}."
    )


def markdown(p: Figures) -> str:
    """The section of BENCHMARKS.md."""
    loader = p["loader_items_per_s"]
    c = p["compile"]
    compiled = "not measured (quick run)"
    if c is not None:
        even = c["break_even_steps"] if c["break_even_steps"] is not None else "never (no steady gain)"
        compiled = (
            f"first step +{c['first_step_extra_s']} s, steady speedup {c['speedup']}x, break-even after "
            f"{even} steps vs {c['shipped_trial_steps']} steps in a shipped study's trial"
        )
    rows = "".join(f"| {k.replace('_', ' ')} | {v} |\n" for k, v in loader.items())
    return (
        f"## Data pipeline (patch {p['patch_size']}, batch {p['batch_size']}, U-Net {p['model']}, "
        "one thread per process)\n\n"
        "The training loader (albumentations on the real nuclei images) against the training step on the "
        "same batches already in memory. This machine is shared with other work right now, so absolute "
        "figures are noisy; the ratios are measured within one run.\n\n" + device_check_line() + "\n\n"
        "| loader | items/s |\n|---|---|\n" + rows + "\n"
        f"- training step (CPU, 1 thread): **{p['step_images_per_s']}** images/s; loader items/s per core "
        f"/ step images/s: **{p['loader_per_core_over_step']}** (above 1: one core feeds a CPU step; a GPU "
        f"step thousands of images/s fast needs step/loader-per-core cores, or the device path)\n"
        f"- flips and rotations on the device path, on CPU batches: "
        f"{p['device_geometry_images_per_s_on_cpu']} images/s\n"
        f"- fit epoch on one core (a CPU trial's default reservation): "
        f"{p['fit_epoch_images_per_s']['workers_0']} images/s in-process vs "
        f"{p['fit_epoch_images_per_s']['workers_1']} with 1 worker: ratio "
        f"**{p['fit_in_process_over_1_worker']}** (`num_workers: auto` loads in-process on CPU)\n"
        f"- torch.compile on CPU: {compiled}\n"
    )
