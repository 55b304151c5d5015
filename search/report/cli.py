"""Write a study's report: ``python -m search.report --study NAME [--study NAME ...] [--storage URL]``.

Writes ``trials.csv``, ``epochs.csv``, ``summary.md`` and ``plots/STUDY/*.png`` (plus
``plots/comparison.png`` for several studies) into ``--out`` (default ``reports/NAME``). Works on a
study that is still running. Exit status: 0 written, 2 bad input (store, study name), 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna

from search.report.data import StudyRecord, load_study_record
from search.report.findings import find_findings, rung_findings
from search.report.plots import PlotFile, write_comparison_plot, write_study_plots
from search.report.summary import summary_markdown
from search.report.tables import epochs_frame, trials_frame, write_csv
from search.store.engine import StoreError, open_existing_storage
from search.store.location import StoreLocation, add_storage_option
from unet.atomic import write_atomic


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    out_dir: Path
    trials: int  # rows of trials.csv
    epochs: int  # rows of epochs.csv
    plots: list[PlotFile]  # every plot, written or skipped


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.report", description="Write CSV tables, plots and a summary of studies."
    )
    p.add_argument(
        "--study", action="append", required=True, help="a study name in the store; repeat to compare"
    )
    add_storage_option(p)
    p.add_argument("--out", type=Path, help="report folder (default: reports/NAME, reports/A+B for several)")
    p.add_argument("--verbose", action="store_true", help="log what the report does")
    return p


def write_report(records: list[StudyRecord], out_dir: Path, *, storage_display: str) -> ReportFiles:
    """Write the tables, plots and summary of ``records`` into ``out_dir`` (created if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = trials_frame(records)
    epochs = epochs_frame(records)
    write_csv(trials, out_dir / "trials.csv")
    write_csv(epochs, out_dir / "epochs.csv")
    plots, findings = {}, {}
    for record in records:
        rows = trials[trials["study"] == record.name]
        plots[record.name] = write_study_plots(record, rows, out_dir / "plots" / record.name)
        # A study not made by unet-search has no stored space: its parameters are judged by their values.
        space = record.space or {name: {} for name in record.param_names}
        study_epochs = epochs[epochs["study"] == record.name]
        findings[record.name] = find_findings(rows, space) + rung_findings(rows, study_epochs, space)
    comparison = None
    if len(records) > 1:
        comparison = write_comparison_plot(records, trials, out_dir / "plots" / "comparison.png")
    text = summary_markdown(
        records,
        trials,
        findings,
        plots,
        out_dir=out_dir,
        storage_display=storage_display,
        comparison=comparison,
    )
    write_atomic(out_dir / "summary.md", lambda f: f.write(text))
    every_plot = [plot for name in sorted(plots) for plot in plots[name]]
    return ReportFiles(out_dir, len(trials), len(epochs), every_plot + ([comparison] if comparison else []))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = sorted(set(args.study))
    try:
        location = StoreLocation.parse(args.storage)
        shown = location.shown
        storage = open_existing_storage(location)
        records = [load_study_record(storage, name) for name in names]
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out_dir = args.out or Path("reports") / "+".join(names)
    files = write_report(records, out_dir, storage_display=shown)
    written = sum(p.path is not None for p in files.plots)
    skipped = len(files.plots) - written
    print(
        f"Report of {', '.join(names)} from {shown} written to {out_dir}: summary.md, "
        f"trials.csv ({files.trials} trials), epochs.csv ({files.epochs} epochs), {written} plots"
        + (f" ({skipped} not drawn yet, summary.md says why)" if skipped else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
