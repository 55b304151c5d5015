"""``summary.md``: what a search found, in words and small tables.

Per study: the best configuration (every setting the winner trained with, ready to retrain), the top ten,
a table of stop reasons against diagnoses, the trials grouped by cause with the study's single most
useful next step, the findings that explain them, the compute spent and saved by pruning, and the
plots. Several studies get a comparison table first. The text depends only on the store's contents
(no time of writing), so two summaries of the same store are identical.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from search.outcome import DIAGNOSIS_MEANINGS, PAUSED
from search.ranking import rank_trials
from search.report import markdown as md
from search.report.data import StudyRecord
from search.report.findings import Finding
from search.report.groups import MIN_CONTRAST, MIN_GROUP, MIN_SHARE
from search.report.next_step import next_step
from search.report.plots import PlotFile
from search.spec.space import flatten_settings

TOP = 10


def summary_markdown(
    records: Sequence[StudyRecord],
    trials: pd.DataFrame,
    findings: Mapping[str, list[Finding]],
    plots: Mapping[str, list[PlotFile]],
    *,
    out_dir: Path,
    storage_display: str,
    comparison: PlotFile | None = None,
) -> str:
    """The whole ``summary.md``.

    Args:
        records: the studies reported.
        trials: ``search.report.tables.trials_frame(records)``.
        findings: per study name, ``search.report.findings.find_findings`` of its trials.
        plots: per study name, its plots.
        out_dir: the report folder (plot links are relative to it).
        storage_display: the store's URL without password.
        comparison: the plot comparing the studies, when there are several.
    """
    ordered = sorted(records, key=lambda r: r.name)
    lines = [f"# Search report: {', '.join(r.name for r in ordered)}", "", f"Store: `{storage_display}`", ""]
    if len(ordered) > 1:
        lines += _comparison(ordered, trials, comparison, out_dir)
    for record in ordered:
        rows = trials[trials["study"] == record.name]
        lines += _study_section(record, rows, findings.get(record.name, []), storage_display)
        lines += _plots_section(plots.get(record.name, []), out_dir)
    return "\n".join(lines).rstrip() + "\n"


def _comparison(
    records: Sequence[StudyRecord], trials: pd.DataFrame, plot: PlotFile | None, out_dir: Path
) -> list[str]:
    header = ["study", "trials", "complete", "pruned", "failed", "running", "best val Dice", "best trial",
              "images spent", "saved by pruning"]  # fmt: skip
    body = []
    for record in records:
        rows = trials[trials["study"] == record.name]
        best = _best_row(record, rows)
        states = rows["state"].value_counts()
        body.append(
            [
                record.name,
                str(len(rows)),
                *(str(int(states.get(s, 0))) for s in ("COMPLETE", "PRUNED", "FAIL")),
                str(int(states.get("RUNNING", 0) + states.get("WAITING", 0))),
                md.num(best["peak_val_dice"]) if best is not None else "-",
                f"#{int(best['number'])}" if best is not None else "-",
                md.count(md.total(rows["compute_images"])),
                md.count(md.total(rows["compute_saved_images"])),
            ]
        )
    lines = ["## Studies compared", "", *md.table(header, body), ""]
    if plot is not None and plot.path is not None:
        lines += [f"![{plot.title}]({md.link(plot.path, out_dir)})", ""]
    return lines


def _study_section(
    record: StudyRecord, rows: pd.DataFrame, findings: list[Finding], storage_display: str
) -> list[str]:
    states = rows["state"].value_counts()
    running = int(states.get("RUNNING", 0) + states.get("WAITING", 0))
    source = record.spec.get("source") or "unknown study file"
    lines = [
        f"## Study `{record.name}`",
        "",
        f"{len(rows)} trials: {int(states.get('COMPLETE', 0))} complete, {int(states.get('PRUNED', 0))} "
        f"pruned, {int(states.get('FAIL', 0))} failed"
        + (f", {running} still running (the study is in progress)" if running else "")
        + f". Study file: `{source}`.",
        "",
    ]
    lines += _best_section(record, rows, storage_display)
    lines += _outcomes_section(rows)
    lines += _causes_section(record, rows, findings)
    lines += _findings_section(findings)
    lines += _compute_section(record, rows)
    return lines


def _best_section(record: StudyRecord, rows: pd.DataFrame, storage_display: str) -> list[str]:
    best = _best_row(record, rows)
    if best is None:
        return ["### Best configuration", "", "No trial has trained yet.", ""]
    params = record.param_names
    folds = json.loads(best["fold_val_dice"]) if isinstance(best["fold_val_dice"], str) else None
    value = (
        f"val Dice {md.num(best['peak_val_dice'])}, the mean of {len(folds)} folds "
        f"({', '.join(md.num(v) for v in folds)}), fold 1's best epoch {md.integer(best['best_epoch'])}"
        if folds
        else f"val Dice {md.num(best['peak_val_dice'])} at epoch {md.integer(best['best_epoch'])}"
    )
    lines = [
        "### Best configuration",
        "",
        f"Trial #{int(best['number'])}: {value}, {_outcome(best['state'], best['stop_reason'])}, diagnosis "
        f"{md.text(best['diagnosis'])}.",
        "",
    ]
    floor = record.constant_dice
    if floor is not None:
        lines[-1:] = [
            f"Predicting foreground everywhere scores val Dice {md.num(floor)} on this validation split "
            f"(background everywhere: 0); this trial is {_above(best['peak_val_dice'], floor)} above it.",
            "",
        ]
    tested = record.test_scores.get(str(int(best["number"])))
    if tested is not None:
        lines[-1:] = [
            f"Held-out test Dice {md.num(tested['test_dice'])} on {tested['images']} image(s), scored once "
            f"after the search (the validation Dice picked this trial among many, so it is optimistic).",
            "",
        ]
    settings: dict[str, Any] = {name: best[name] for name in params}
    settings.update(flatten_settings(record.spec.get("fixed") or {}))
    if record.max_epochs is not None:
        settings["epochs"] = record.max_epochs
    body = [[f"**{name}**" if name in params else name, md.value(value)] for name, value in settings.items()]
    lines += [*md.table(["setting (searched in bold)", "value"], body), ""]
    lines += [
        "Retrain it: `python -m search.retrain "
        f"--study {record.name} --storage {storage_display} --out runs/{record.name}-best`",
        "",
    ]
    ranked = _ranked(record, rows)
    continued = _continued(rows)
    test = record.test_scores
    k = int((record.spec.get("objective") or {}).get("folds") or 1)
    val_header = f"val Dice (complete: mean of {k} folds)" if k > 1 else "val Dice"
    floor = record.constant_dice
    header = ["trial", val_header, *(["vs all foreground"] if floor is not None else [])]
    header += [*(["test Dice"] if test else []), "epoch", *params, "outcome", "diagnosis"]
    body = [
        [f"#{int(r['number'])}", md.num(r["peak_val_dice"]),
         *([_above(r["peak_val_dice"], floor)] if floor is not None else []),
         *([md.num(test.get(str(int(r["number"])), {}).get("test_dice"))] if test else []),
         md.integer(r["best_epoch"]), *(md.value(r[p]) for p in params),
         _outcome(r["state"], r["stop_reason"], continued=int(r["number"]) in continued),
         md.text(r["diagnosis"])]
        for _, r in ranked.head(TOP).iterrows()
    ]  # fmt: skip
    lines += [f"### Top {len(body)}", "", *md.table(header, body), ""]
    return lines


def _outcomes_section(rows: pd.DataFrame) -> list[str]:
    """Stop reasons (rows) against diagnoses (columns), counted."""
    if rows.empty:
        return []
    continued = _continued(rows)
    outcome = [
        _outcome(s, r, continued=int(n) in continued)
        for s, r, n in zip(rows["state"], rows["stop_reason"], rows["number"], strict=True)
    ]
    diagnosis = [md.text(d, missing="(none)") for d in rows["diagnosis"]]
    table = pd.crosstab(pd.Series(outcome, name="outcome"), pd.Series(diagnosis, name="diagnosis"))
    table = table.reindex(sorted(table.index, key=_outcome_key))
    columns = sorted(table.columns)
    body = [
        [str(name), *(str(int(table.loc[name, c])) for c in columns), str(int(table.loc[name].sum()))]
        for name in table.index
    ]
    lines = ["### Stop reasons and diagnoses", ""]
    lines += md.table(["outcome \\ diagnosis", *columns, "total"], body)
    return [*lines, ""]


def _causes_section(record: StudyRecord, rows: pd.DataFrame, findings: list[Finding]) -> list[str]:
    """Trials grouped by diagnosis, most common first, and the study's next step."""
    diagnosed = rows[rows["diagnosis"].notna()]
    if diagnosed.empty:
        return []
    space = record.space or {name: {} for name in record.param_names}
    step = next_step(rows, space, findings=findings)
    lines = ["### Causes", "", f"Next step: {step}", ""]
    counts = diagnosed["diagnosis"].value_counts()
    body = []
    for label in sorted(counts.index, key=lambda d: (-int(counts[d]), str(d))):
        numbers = sorted(int(n) for n in diagnosed.loc[diagnosed["diagnosis"] == label, "number"])
        shown = ", ".join(f"#{n}" for n in numbers[:8]) + (", ..." if len(numbers) > 8 else "")
        body.append([str(label), str(int(counts[label])), DIAGNOSIS_MEANINGS.get(str(label), ""), shown])
    lines += md.table(["diagnosis", "trials", "meaning", "trial numbers"], body)
    return [*lines, ""]


def _findings_section(findings: list[Finding]) -> list[str]:
    lines = ["### Findings", ""]
    if not findings:
        lines.append(
            f"No parameter value or range stands out: no group of {MIN_GROUP} or more finished trials "
            f"shares a stop reason or diagnosis in {MIN_SHARE:.0%} of its trials and "
            f"{MIN_CONTRAST:.0%} more often than the other trials."
        )
    lines += [f"- {finding.sentence}" for finding in findings]
    return [*lines, ""]


def _compute_section(record: StudyRecord, rows: pd.DataFrame) -> list[str]:
    lines = ["### Compute", ""]
    if rows.empty:
        return [*lines, "No trial has run yet.", ""]
    split = _time_split(record.epochs)
    if split is not None:
        lines += [split, ""]
    spent = md.total(rows["compute_images"])
    epochs = md.total(rows["epochs_run"])
    if spent is None:
        lines.append(
            f"{md.count(epochs)} epochs trained; images per epoch unknown (the trials did not record "
            "train_images), so compute cannot be counted in images."
        )
        return [*lines, ""]
    lines.append(f"Spent {md.count(spent)} training images in {md.count(epochs)} epochs.")
    pruned = rows[rows["state"] == "PRUNED"]
    saved = md.total(pruned["compute_saved_images"])
    if pruned.empty:
        lines.append("No trial was pruned, so pruning saved nothing.")
    elif saved is None or record.max_epochs is None:
        lines.append("Saved by pruning: unknown (the study's max_epochs or images per epoch are unknown).")
    else:
        mean_epochs = float(pruned["epochs_run"].astype("float64").mean())
        lines.append(
            f"Pruning saved {md.count(saved)} images, {saved / (spent + saved):.0%} of the "
            f"{md.count(spent + saved)} the study would have spent without it: {len(pruned)} pruned trials "
            f"stopped after {mean_epochs:.1f} of {record.max_epochs} epochs on average."
        )
    return [*lines, ""]


# Parts of an epoch's wall time (``unet.history.EpochRecord``), in the order the summary names them.
TIME_PARTS = (
    ("train_s", "training steps"),
    ("val_s", "validation"),
    ("evidence_s", "evidence"),
    ("data_wait_s", "waiting for data"),
)


def _time_split(epochs: pd.DataFrame) -> str | None:
    """Where the epochs' wall time went, as shares of it; None when no epoch recorded the split."""
    columns = [name for name, _ in TIME_PARTS]
    if epochs.empty or not set(columns) <= set(epochs.columns):
        return None
    timed = epochs.dropna(subset=[*columns, "seconds"])
    total = float(timed["seconds"].sum())
    if timed.empty or total <= 0:
        return None
    parts = {name: float(timed[name].sum()) / total for name in columns}
    other = 1.0 - sum(parts.values())
    shares = ", ".join(f"{label} {parts[name]:.0%}" for name, label in TIME_PARTS)
    return (
        f"Epoch time ({md.count(len(timed))} epochs, {total:,.0f} s): {shares}, other {other:.0%} "
        "(a large share of waiting for data asks for more loader workers; of validation, for fewer or "
        "smaller validation images)."
    )


def _plots_section(plots: list[PlotFile], out_dir: Path) -> list[str]:
    if not plots:
        return []
    lines = ["### Plots", ""]
    for plot in plots:
        if plot.path is not None:
            lines += [f"![{plot.title}]({md.link(plot.path, out_dir)})", ""]
    skipped = [f"{p.title} ({p.skipped})" for p in plots if p.skipped is not None]
    if skipped:
        lines += ["Not drawn: " + "; ".join(skipped) + ".", ""]
    return lines


def _ranked(record: StudyRecord, rows: pd.DataFrame) -> pd.DataFrame:
    """The study's rows of the trials :func:`search.ranking.rank_trials` ranks, in its order (best first)."""
    order = {trial.number: place for place, trial in enumerate(rank_trials(record.trials))}
    candidates = rows[rows["number"].isin(order)]
    return candidates.iloc[candidates["number"].map(order).argsort()]


def _above(value: Any, floor: float) -> str:
    """A val Dice's distance to the constant-prediction floor, e.g. "+0.5312"."""
    return f"{float(value) - floor:+.4f}" if isinstance(value, int | float) and math.isfinite(value) else "-"


def _best_row(record: StudyRecord, rows: pd.DataFrame) -> pd.Series | None:
    ranked = _ranked(record, rows)
    return None if ranked.empty else ranked.iloc[0]


def _outcome(state: str, reason: Any, *, continued: bool = False) -> str:
    """How a trial ended, in a few words; a paused trial whose training a later trial continued says so
    (it was not a final stop)."""
    if state == "COMPLETE":
        return "complete"
    if state in ("RUNNING", "WAITING"):
        return state.lower()
    prefix = {"PRUNED": "pruned", "FAIL": "failed"}.get(state, state.lower())
    suffix = ", then continued" if continued and reason == PAUSED else ""
    return f"{prefix}: {md.text(reason, missing='no reason')}{suffix}"


def _continued(rows: pd.DataFrame) -> set[int]:
    """The numbers of the paused trials that a later trial continued (the rows' ``continued_from``)."""
    return {int(n) for n in rows["continued_from"].dropna()}


def _outcome_key(outcome: str) -> tuple[int, str]:
    order = ("complete", "pruned", "failed", "running", "waiting")
    head = outcome.split(":")[0]
    return (order.index(head) if head in order else len(order), outcome)
