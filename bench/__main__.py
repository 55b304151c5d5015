"""Run every benchmark: ``python -m bench`` (the full run: about 40 minutes on a loaded 2-core CPU, plus
about 15 the first time, to build the efficiency tables) or ``python -m bench --quick`` (CI: tiny sizes,
keeps the scripts working, no thresholds).

Results go to ``OUT/results.json`` (everything, machine-readable) and one ``OUT/<section>.json`` per
section; the markdown report goes to ``BENCHMARKS.md`` at the repository root for a full run of every
section, else to ``OUT/BENCHMARKS.md`` (``--markdown`` chooses). A section that fails is reported with its
error and the others still run; the exit status is then 1.

Sections: ``efficiency`` (search strategies on a hard task: replay and live tiers), ``throughput`` (fit
against a bare loop, FLOP/s against matmul), ``orchestration`` (per-trial overhead of the backends,
``bench.orchestration``), ``store`` (write costs, concurrent workers, growth to 10,000 trials),
``pipeline`` (loader items/s per core and with workers against the training step, ``bench.pipeline``),
``diagnosis`` (crafted runs of known cause: labels right, advice that fixes them; ``bench.diagnosis``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("efficiency", "throughput", "orchestration", "store", "pipeline", "diagnosis")
PACKAGES = ("torch", "optuna", "ray", "sqlalchemy", "psycopg", "pymysql", "numpy", "albumentations")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the benchmarks; write bench/results/*.json and the BENCHMARKS.md report.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes for CI (seconds, figures meaningless)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="results folder")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument("--markdown", type=Path, help="where to write the report (default: see above)")
    p.add_argument("--workers", type=int, default=2, help="processes for training and replays (default 2)")
    p.add_argument(
        "--data",
        type=Path,
        help="dataset folder (images/, masks/) for the efficiency section's real-image task "
        "(default: ../shared/data/dsb2018-nuclei beside the checkout, when it is there)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        print(f"error: --workers must be >= 1 but got {args.workers}", file=sys.stderr)
        return 2
    if args.data is not None and not ((args.data / "images").is_dir() and (args.data / "masks").is_dir()):
        print(
            f"error: --data {args.data} has no images/ and masks/ folders: give a dataset folder in the "
            "layout python -m unet.train reads",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sections = tuple(args.only or SECTIONS)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": machine(args, sections), "sections": {}}
    failed = False
    for name in sections:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        section_started = time.perf_counter()
        try:
            figures = RUNNERS[name](args)
        except Exception as e:  # one broken section must not hide the others' figures
            traceback.print_exc()
            figures = {
                "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e) else ''}"
            }
            failed = True
        if figures is None:
            print(f"[bench] {name}: not available, skipped", file=sys.stderr)
            continue
        seconds = round(time.perf_counter() - section_started, 1)
        results["meta"]["section_seconds"][name] = seconds
        results["sections"][name] = figures
        (args.out / f"{name}.json").write_text(_dumps(figures))
        print(f"[bench] {name} done in {seconds:.0f} s", file=sys.stderr, flush=True)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "results.json").write_text(_dumps(results))
    from bench.report import render

    markdown = args.markdown
    if markdown is None:
        complete = not args.quick and set(sections) == set(SECTIONS)
        markdown = REPO / "BENCHMARKS.md" if complete else args.out / "BENCHMARKS.md"
    markdown.write_text(render(results))
    print(f"[bench] results in {args.out}, report in {markdown}", file=sys.stderr)
    return 1 if failed else 0


def _dumps(data: Any) -> str:
    return json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n"


def _json_safe(data: Any) -> Any:
    """NaN and inf as strings, so the files are strict JSON."""
    if isinstance(data, dict):
        return {str(k): _json_safe(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_json_safe(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    return data


def machine(args: argparse.Namespace, sections: tuple[str, ...]) -> dict[str, Any]:
    """Date, command, CPU, memory, platform and package versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory_gb = None
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python -m bench"
        + (" --quick" if args.quick else "")
        + (f" --only {' '.join(sections)}" if args.only else ""),
        "quick": args.quick,
        "sections": list(sections),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "versions": versions,
        "section_seconds": {},
    }


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_efficiency(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import replace

    from bench.efficiency import section

    data = args.data if args.data is not None else section.DEFAULT_DATA
    folder = section.folder_task(data, quick=args.quick) if (data / "images").is_dir() else None
    settings = replace(
        section.QUICK if args.quick else section.FULL, workers=args.workers, folder_task=folder
    )
    return section.run(settings, args.out / "cache", say=_say)


def run_throughput(args: argparse.Namespace) -> dict[str, Any]:
    from bench import throughput

    if args.quick:
        return throughput.run(rounds=1, size=32, images=8, matmul_n=256)
    return throughput.run(rounds=6)  # the median of 6 rounds rides out other users' bursts better


def run_store(args: argparse.Namespace) -> dict[str, Any]:
    from bench import store

    if args.quick:
        return store.run(
            worker_counts=(1, 2), sizes=(10, 100), trials=2, epochs=2, load_workers=4, on_step=_say
        )
    return store.run(on_step=_say)


def run_orchestration(args: argparse.Namespace) -> dict[str, Any] | None:
    """``bench.orchestration.run(quick=...)`` when that module exists (it is written separately)."""
    if importlib.util.find_spec("bench.orchestration") is None:
        return None
    module = importlib.import_module("bench.orchestration")
    return module.run(quick=args.quick)


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    from bench import pipeline

    return pipeline.run(quick=args.quick)


def run_diagnosis(args: argparse.Namespace) -> dict[str, Any]:
    from bench.diagnosis import section

    return section.run(quick=args.quick, workers=args.workers, say=_say)


RUNNERS: dict[str, Callable[[argparse.Namespace], dict[str, Any] | None]] = {
    "efficiency": run_efficiency,
    "throughput": run_throughput,
    "orchestration": run_orchestration,
    "store": run_store,
    "pipeline": run_pipeline,
    "diagnosis": run_diagnosis,
}


if __name__ == "__main__":
    raise SystemExit(main())
