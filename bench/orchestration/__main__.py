"""``python -m bench.orchestration``: the orchestration section alone, to ``OUT/orchestration.json`` and
``OUT/orchestration.md`` (``bench.orchestration.measure`` says what is measured)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from bench.orchestration.measure import run
from bench.orchestration.section import markdown


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.orchestration",
        description="Per-trial orchestration overhead of the Ray backend against the local backend.",
    )
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--trials", type=int, help="trials per backend (default 30; 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="3 trials per backend, no run without actor reuse")
    args = p.parse_args(argv)
    if args.trials is not None and args.trials < 2:
        print(f"error: --trials must be >= 2 but got {args.trials}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    figures = run(quick=args.quick, trials=args.trials)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "ray": metadata.version("ray"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "orchestration.json").write_text(json.dumps({"meta": meta, **figures}, indent=2) + "\n")
    text = markdown(figures, meta)
    (args.out / "orchestration.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
