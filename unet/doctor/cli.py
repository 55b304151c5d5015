"""The dataset doctor's command line: ``python -m unet.doctor DIR [--val DIR] [--num-classes K] [--json]``.

``--val-fraction``, ``--test-fraction`` and ``--seed`` describe the split as the study file's data section
does, so the report's splits (and its one-split class warnings) are the ones training will see.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from unet.config import VAL_FRACTION
from unet.data.plan import DEFAULT_DEPTH
from unet.folder_source import FolderSource


def main(argv: list[str] | None = None) -> int:
    """Command line: print the report of a dataset folder; exit 0 when usable, 2 when not."""
    parser = argparse.ArgumentParser(
        prog="python -m unet.doctor", description="Check a dataset folder and print its plan."
    )
    parser.add_argument("root", metavar="DIR", help="dataset folder holding images/ and masks/")
    parser.add_argument("--val", metavar="DIR", help="separate validation folder of the same layout")
    parser.add_argument(
        "--num-classes", type=int, metavar="K", help="K >= 2 for masks of class indices 0..K-1"
    )
    parser.add_argument(
        "--val-fraction", type=float, default=VAL_FRACTION, help="validation share without --val"
    )
    parser.add_argument(
        "--test-fraction", type=float, default=0.0, help="held-out test share of DIR (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/validation/test split")
    parser.add_argument("--patch-size", type=int, help="patch side to plan with (default: from the data)")
    parser.add_argument("--depth", type=int, default=DEFAULT_DEPTH, help="deepest U-Net to plan for")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    source = FolderSource(
        Path(args.root),
        val_root=None if args.val is None else Path(args.val),
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        num_classes=args.num_classes,
        patch_size=args.patch_size,
    )
    report = source.inspect(depth=args.depth)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 2
