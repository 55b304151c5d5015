"""The report's plots, as PNG files drawn with matplotlib's Agg backend (no display needed).

Optuna's own matplotlib plots are used where they fit (parameter importances, parallel coordinates);
they are drawn on a study rebuilt in memory from the report's snapshot, so plots and tables show the
same trials even while the study runs, and when too few trials complete (successive halving ends most
at its first rung) on every trial's val Dice at a common epoch (``report.common_epoch``). Importances
are Optuna's default evaluator, PED-ANOVA, which needs no scikit-learn. The optimisation history (every
trial's best val Dice, pruned ones too, by outcome, beside the constant-prediction floor), learning
curves coloured by outcome (diverged trials on a log loss axis of their own), the objective against each
searched parameter and the comparison of several studies are drawn here.

A plot that cannot say anything yet (too few trials) is skipped with the reason, never drawn empty.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: reports run on servers and in CI, without a display

import matplotlib.pyplot as plt
import optuna
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.trial import TrialState
from optuna.visualization import matplotlib as optuna_plots

from search.report.common_epoch import common_epoch_study
from search.report.data import StudyRecord

logger = logging.getLogger(__name__)

# Completed trials a plot needs before it means anything.
MIN_COMPLETE_HISTORY = 1
MIN_COMPLETE_PARALLEL = 2
MIN_COMPLETE_IMPORTANCE = 5
DPI = 100
# Outcome of a trial -> colour, in legend order: "complete", "running", and every stop reason of
# search.outcome.STOP_REASONS but the retryable ones (tests/search/test_outcome.py checks that).
OUTCOME_COLOURS: dict[str, str] = {
    "complete": "tab:green",
    "plateau": "tab:orange",
    "underperforming": "tab:gray",
    "paused": "tab:olive",
    "diverged": "tab:red",
    "out_of_memory": "tab:purple",
    "error": "tab:brown",
    "running": "tab:blue",
}
_OTHER_COLOUR = "black"
# The objective's metric (spec objective.metric) as an axis names it.
_METRIC_NAMES = {"val_dice": "val Dice"}


@dataclass(frozen=True)
class PlotFile:
    """A plot of the report: written to ``path``, or skipped for ``skipped`` (a reason)."""

    name: str  # file stem, e.g. "optimization_history"
    title: str  # what it shows, for the summary
    path: Path | None = None
    skipped: str | None = None


def outcome(state: str, stop_reason: Any, diagnosis: Any = None) -> str:
    """How a trial ended, as one word for colours and legends; a stopped trial diagnosed as diverged
    (e.g. pruned as underperforming after a loss that exploded) is "diverged"."""
    if state == "COMPLETE":
        return "complete"
    if state in ("RUNNING", "WAITING"):
        return "running"
    if diagnosis == "diverged":
        return "diverged"
    return stop_reason if isinstance(stop_reason, str) and stop_reason else state.lower()


def _outcomes(trials: pd.DataFrame) -> list[str]:
    diagnoses = trials["diagnosis"] if "diagnosis" in trials.columns else [None] * len(trials)
    return [
        outcome(s, r, d) for s, r, d in zip(trials["state"], trials["stop_reason"], diagnoses, strict=True)
    ]


def write_study_plots(record: StudyRecord, trials: pd.DataFrame, out_dir: Path) -> list[PlotFile]:
    """Draw every plot of one study into ``out_dir``.

    Args:
        record: the study snapshot.
        trials: its rows of ``search.report.tables.trials_frame``.
        out_dir: the folder for the PNG files (created if missing).

    Returns:
        One entry per plot, in a fixed order, written or skipped.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot = snapshot_study(record)
    n_complete = int((trials["state"] == "COMPLETE").sum())
    plots = [
        _history(record, trials, out_dir),
        _optuna_plot(
            out_dir, "param_importances", "parameter importances (PED-ANOVA)",
            functools.partial(optuna_plots.plot_param_importances, target_name="val Dice"),
            snapshot, n_complete, MIN_COMPLETE_IMPORTANCE, record,
        ),
        _learning_curves(record, trials, out_dir),
        *(_objective_vs(record, trials, name, out_dir) for name in record.param_names),
        _optuna_plot(
            out_dir, "parallel_coordinates", "parallel coordinates",
            functools.partial(optuna_plots.plot_parallel_coordinate, target_name="val Dice"),
            snapshot, n_complete, MIN_COMPLETE_PARALLEL, record,
        ),
    ]  # fmt: skip
    return plots


def write_comparison_plot(records: Sequence[StudyRecord], trials: pd.DataFrame, path: Path) -> PlotFile:
    """Best val Dice so far against trial number, one line per study."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for record in sorted(records, key=lambda r: r.name):
        rows = trials[(trials["study"] == record.name) & (trials["state"] == "COMPLETE")]
        if rows.empty:
            continue
        best = rows["objective"].cummax()
        (line,) = ax.step(
            rows["number"], best, where="post", label=f"{record.name} (best {best.iloc[-1]:.4f})"
        )
        ax.scatter(rows["number"], rows["objective"], s=12, alpha=0.5, color=line.get_color())
    ax.set_xlabel("trial number")
    ax.set_ylabel("val Dice (best so far)")
    ax.set_title("Studies compared")
    if ax.has_data():
        ax.legend(fontsize="small")
    return _save(fig, path, "comparison", "studies compared: best val Dice so far")


def snapshot_study(record: StudyRecord) -> optuna.Study:
    """An in-memory study holding the record's finished trials, for Optuna's plot functions."""
    study = optuna.create_study(study_name=record.name, direction="maximize")
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    study.add_trials([trial for trial in record.trials if trial.state in finished])
    return study


def safe_name(name: str) -> str:
    """A parameter name as part of a file name: ``model.depth`` -> ``model_depth``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


def _optuna_plot(
    out_dir: Path,
    name: str,
    title: str,
    draw: Callable[[optuna.Study], Any],
    study: optuna.Study,
    n_complete: int,
    needed: int,
    record: StudyRecord,
) -> PlotFile:
    if not any(t.params for t in study.trials):
        return PlotFile(name, title, skipped="the study searches no parameter")
    if n_complete < needed:
        common = common_epoch_study(record, needed)
        if common is None or common.trials < needed:
            return PlotFile(
                name,
                title,
                skipped=f"needs {needed} completed trials or trials at a common epoch, has {n_complete}",
            )
        study = common.study
        title = f"{title} of val Dice at epoch {common.epoch} ({common.trials} trials, pruned ones too)"
    # Optuna switches matplotlib's global style: the context puts it back for the plots drawn here.
    with warnings.catch_warnings(), plt.rc_context():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        drawn = draw(study)
        axes = drawn if isinstance(drawn, Axes) else drawn.flat[0]
        fig = axes.figure
        assert isinstance(fig, Figure)  # internal: Optuna draws on a figure of its own
        fig.set_size_inches(8, 5)
        if n_complete < needed:
            fig.suptitle(f"{record.name}: {title}: {n_complete} completed, too few", fontsize="small")
        return _save(fig, out_dir / f"{name}.png", name, title)


def _history(record: StudyRecord, trials: pd.DataFrame, out_dir: Path) -> PlotFile:
    """Every trial's best val Dice by trial number, pruned ones too, coloured by outcome, with the best so
    far and the Dice of predicting foreground everywhere."""
    name, title = "optimization_history", "optimisation history: every trial's best val Dice"
    values = trials["peak_val_dice"].fillna(trials["objective"])
    rows = trials.assign(value=values, kind=_outcomes(trials))[values.notna()]
    if rows.empty:
        return PlotFile(name, title, skipped="no trial with a val Dice yet")
    fig, ax = plt.subplots(figsize=(8, 5))
    for kind, group in sorted(rows.groupby("kind"), key=lambda item: _outcome_order(str(item[0]))):
        colour = OUTCOME_COLOURS.get(str(kind), _OTHER_COLOUR)
        filled = kind == "complete"
        ax.scatter(
            group["number"], group["value"], s=30, label=f"{kind} ({len(group)})",
            facecolors=colour if filled else "none", edgecolors=colour,
        )  # fmt: skip
    ax.step(rows["number"], rows["value"].cummax(), where="post", color="black", lw=1, label="best so far")
    floor = record.constant_dice
    if floor is not None:
        ax.axhline(floor, color="tab:red", ls="--", lw=1, label=f"all foreground ({floor:.3f})")
    metric = (record.spec.get("objective") or {}).get("metric", "val_dice")
    ax.set(
        xlabel="trial number", ylabel=f"{_METRIC_NAMES.get(metric, metric)} (best epoch)",
        title=f"{record.name}: optimisation history (hollow: stopped early, best epoch so far)",
    )  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    return _save(fig, out_dir / f"{name}.png", name, title)


def _learning_curves(record: StudyRecord, trials: pd.DataFrame, out_dir: Path) -> PlotFile:
    name, title = "learning_curves", "learning curves coloured by outcome"
    if record.epochs.empty:
        return PlotFile(name, title, skipped="no epoch stored yet")
    outcomes = dict(zip(trials["number"].astype(int), _outcomes(trials), strict=True))
    diverged = {n for n, kind in outcomes.items() if kind == "diverged"}
    if diverged:
        fig, (loss_ax, diverged_ax, dice_ax) = plt.subplots(1, 3, figsize=(15, 4.5))
    else:
        fig, (loss_ax, dice_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    seen: dict[str, int] = {}
    for number, rows in record.epochs.groupby("trial_number", sort=True):
        kind = outcomes.get(int(number), "running")
        colour = OUTCOME_COLOURS.get(kind, _OTHER_COLOUR)
        label = None if kind in seen else kind
        seen[kind] = seen.get(kind, 0) + 1
        # Markers keep a trial stopped after one epoch visible.
        style = {"color": colour, "alpha": 0.7, "lw": 1, "marker": "o", "markersize": 2.5, "label": label}
        # A diverged loss (1e5 where the others sit near 1) would flatten every other curve.
        (diverged_ax if int(number) in diverged else loss_ax).plot(rows["epoch"], rows["val_loss"], **style)
        dice_ax.plot(rows["epoch"], rows["val_dice"], **style)
    losses = record.epochs[~record.epochs["trial_number"].isin(diverged)]["val_loss"].dropna()
    if len(losses) and (losses > 0).all():
        loss_ax.set_yscale("log")
    loss_ax.set(xlabel="epoch", ylabel="val loss", title="Validation loss")
    dice_ax.set(xlabel="epoch", ylabel="val Dice", title="Validation Dice")
    axes = [loss_ax, dice_ax]
    if diverged:
        diverged_ax.set_yscale("log")
        diverged_ax.set(xlabel="epoch", ylabel="val loss (log)", title=f"Diverged trials ({len(diverged)})")
        axes.append(diverged_ax)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = dice_ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: _outcome_order(labels[i]))
    dice_ax.legend(
        [handles[i] for i in order], [f"{labels[i]} ({seen[labels[i]]})" for i in order], fontsize="small"
    )
    fig.suptitle(f"{record.name}: learning curves")
    return _save(fig, out_dir / f"{name}.png", name, title)


def _objective_vs(record: StudyRecord, trials: pd.DataFrame, param: str, out_dir: Path) -> PlotFile:
    """Val Dice against one parameter: filled for completed trials, hollow for the peak of stopped ones."""
    name, title = f"objective_vs_{safe_name(param)}", f"val Dice against {param}"
    # Trials without stored epochs (a study not run by unet-search) are placed by their objective.
    trials = trials.assign(peak_val_dice=trials["peak_val_dice"].fillna(trials["objective"]))
    rows = trials[trials[param].notna() & trials["peak_val_dice"].notna()]
    if rows.empty:
        return PlotFile(name, title, skipped="no trial with a val Dice yet")
    definition = record.space.get(param, {})
    choices = list(definition.get("choices") or [])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, group in sorted(rows.groupby(_outcomes(rows)), key=lambda item: _outcome_order(str(item[0]))):
        x = [_x_position(v, choices) for v in group[param]]
        colour = OUTCOME_COLOURS.get(str(kind), _OTHER_COLOUR)
        filled = kind == "complete"
        ax.scatter(
            x, group["peak_val_dice"], label=f"{kind} ({len(group)})", s=30,
            facecolors=colour if filled else "none", edgecolors=colour,
        )  # fmt: skip
    if choices:
        ax.set_xticks(range(len(choices)), [str(c) for c in choices])
        ax.set_xlim(-0.5, len(choices) - 0.5)
    elif definition.get("log"):
        ax.set_xscale("log")
    ax.set(xlabel=param, ylabel="val Dice (best epoch)", title=f"{record.name}: val Dice against {param}")
    ax.legend(fontsize="small", title="hollow: stopped early, best epoch so far", title_fontsize="x-small")
    return _save(fig, out_dir / f"{name}.png", name, title)


def _x_position(value: Any, choices: list[Any]) -> float:
    if not choices:
        return float(value)
    for index, choice in enumerate(choices):
        if str(choice) == str(value) or (
            _number(choice) and _number(value) and float(choice) == float(value)
        ):
            return float(index)
    return float("nan")


def _number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return math.isfinite(value)
    return False


def _outcome_order(kind: str) -> tuple[int, str]:
    order = list(OUTCOME_COLOURS)
    return (order.index(kind) if kind in order else len(order), kind)


def _save(fig: Figure, path: Path, name: str, title: str) -> PlotFile:
    try:
        fig.tight_layout()
        # No timestamp in the file: two reports of the same store give the same PNG.
        fig.savefig(path, dpi=DPI, metadata={"Software": None})
    finally:
        plt.close(fig)
    logger.info("wrote %s", path)
    return PlotFile(name, title, path=path)
