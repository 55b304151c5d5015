"""Run every benchmark: ``python -m bench`` (the full run: about 40 minutes on a loaded 2-core CPU, plus
about 15 the first time, to build the efficiency tables) or ``python -m bench --quick`` (CI: tiny sizes,
keeps the scripts working, no thresholds).

Results go to ``OUT/results.json`` (everything, machine-readable) and one ``OUT/<section>.json`` per
section; the markdown report goes to ``BENCHMARKS.md`` at the repository root for a full run of every
section, else to ``OUT/BENCHMARKS.md`` (``--markdown`` chooses). A section that fails is reported with its
error and the others still run; the exit status is then 1.

Sections (the registry ``bench.sections.SECTIONS``; each a package ``bench.<name>`` whose ``section``
module implements ``bench.section.Section``): ``efficiency`` (search strategies on a hard task: replay
and live tiers), ``throughput`` (fit against a bare loop, FLOP/s against matmul), ``orchestration``
(per-trial overhead of the backends), ``store`` (write costs, concurrent workers, growth to 10,000
trials, many workers on one budget), ``pipeline`` (loader items/s per core and with workers against the
training step), ``diagnosis`` (crafted runs of known cause: labels right, advice that fixes them). An
``--only`` name that is not a section exits 2 with one line.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import math
import os
import platform
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.paths import REPO, RESULTS
from bench.report import render
from bench.section import RunOptions
from bench.sections import SECTIONS

PACKAGES = ("torch", "optuna", "ray", "sqlalchemy", "psycopg", "pymysql", "numpy", "albumentations")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the benchmarks; write bench/results/*.json and the BENCHMARKS.md report.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes for CI (seconds, figures meaningless)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    p.add_argument(
        "--only", nargs="+", metavar="NAME", help=f"run only these sections: {', '.join(SECTIONS)}"
    )
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
    unknown = [name for name in args.only or () if name not in SECTIONS]
    if unknown:
        print(f"error: {unknown_section(unknown[0])}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sections = tuple(dict.fromkeys(args.only or SECTIONS))
    options = RunOptions(quick=args.quick, out=args.out, workers=args.workers, data=args.data, say=_say)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": machine(args, sections), "sections": {}}
    failed = False
    for name in sections:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        section_started = time.perf_counter()
        try:
            figures = SECTIONS[name].run(options)
        except Exception as e:  # one broken section must not hide the others' figures
            traceback.print_exc()
            figures = {
                "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e) else ''}"
            }
            failed = True
        seconds = round(time.perf_counter() - section_started, 1)
        results["meta"]["section_seconds"][name] = seconds
        results["sections"][name] = figures
        (args.out / f"{name}.json").write_text(_dumps(figures))
        print(f"[bench] {name} done in {seconds:.0f} s", file=sys.stderr, flush=True)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "results.json").write_text(_dumps(results))
    markdown = args.markdown
    if markdown is None:
        complete = not args.quick and set(sections) == set(SECTIONS)
        markdown = REPO / "BENCHMARKS.md" if complete else args.out / "BENCHMARKS.md"
    markdown.write_text(render(results))
    print(f"[bench] results in {args.out}, report in {markdown}", file=sys.stderr)
    return 1 if failed else 0


def unknown_section(name: str) -> str:
    """The one-line error for an ``--only`` name that is not a section: the valid ones, the nearest."""
    near = difflib.get_close_matches(name, SECTIONS, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return f"--only {name!r} is not a section{hint}: choose from {', '.join(SECTIONS)}"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


if __name__ == "__main__":
    raise SystemExit(main())
