"""The report's tables: one row per trial (``trials.csv``) and one row per trial and epoch (``epochs.csv``).

Both are built to diff clean between two reports of the same store: a fixed column order, rows sorted by
study, trial number and epoch, floats written with six significant digits, times to the second. A
RUNNING trial has its state, its parameters and the epochs stored so far, and no end, duration or value.

Compute is counted in images: a trial spends ``epochs_run x train_images``; a pruned trial saved what
its remaining epochs up to ``budget.max_epochs`` would have cost. Under ``objective.folds`` (k folds) the
epoch rows are fold 1's: a complete trial's ``peak_val_dice`` is its value (the mean of the folds, listed in
``fold_val_dice``) and its compute counts the k folds (k x its fold-1 epochs).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from search.outcome import (
    BEST_EPOCH,
    DIAGNOSIS,
    DIAGNOSIS_CHANGES,
    DIAGNOSIS_SUMMARY,
    FOLD_VAL_DICE,
    STOP_EPOCH,
    STOP_MESSAGE,
    STOP_REASON,
    continuations,
    continued_after,
    continued_from,
)
from search.report.data import StudyRecord
from unet.atomic import write_atomic
from unet.history import EPOCH_FIELDS

# trials.csv: these columns, with one column per searched parameter between the two groups.
TRIAL_COLUMNS_BEFORE_PARAMS: tuple[str, ...] = ("study", "number", "state", "objective", "best_epoch")
TRIAL_COLUMNS_AFTER_PARAMS: tuple[str, ...] = (
    "peak_val_dice",  # highest val Dice of any stored epoch, for pruned trials too (k folds: the mean)
    "fold_val_dice",  # objective.folds: each fold's best-epoch val Dice, JSON, fold 1 first
    "epochs_run",
    "stop_reason",
    "stop_epoch",
    "continued_from",  # a continuation: the number of the paused trial it trains on from
    "diagnosis",
    "duration_s",
    "train_images",  # training images per epoch
    "compute_images",  # epochs_run x train_images
    # pruned trials: (max_epochs - epochs before it - epochs_run) x train_images; 0 for a continued one
    "compute_saved_images",
    "datetime_start",
    "datetime_complete",
    "stop_message",
    "diagnosis_summary",
    "diagnosis_changes",  # the diagnosis's advice as settings, JSON (e.g. {"learning_rate": 0.001})
)
EPOCH_REPORT_COLUMNS: tuple[str, ...] = ("study", "trial_number", *EPOCH_FIELDS)
_INT_COLUMNS = (
    "number",
    "best_epoch",
    "epochs_run",
    "stop_epoch",
    "continued_from",
    "train_images",
    "compute_images",
    "compute_saved_images",
)
FLOAT_FORMAT = "%.6g"


def trial_columns(param_names: Sequence[str]) -> list[str]:
    """The column order of ``trials.csv`` for these parameters."""
    return [*TRIAL_COLUMNS_BEFORE_PARAMS, *param_names, *TRIAL_COLUMNS_AFTER_PARAMS]


def all_param_names(records: Sequence[StudyRecord]) -> list[str]:
    """The parameters of several studies in first-seen order (each study's space order first)."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record.param_names))
    return list(names)


def trials_frame(records: Sequence[StudyRecord]) -> pd.DataFrame:
    """One row per trial of every study, sorted by study then number, in :func:`trial_columns` order."""
    params = all_param_names(records)
    rows = [
        _trial_row(record, trial, params, continued=set(continuations(record.trials)))
        for record in sorted(records, key=lambda r: r.name)
        for trial in record.trials
    ]
    frame = pd.DataFrame(rows, columns=trial_columns(params))
    for column in _INT_COLUMNS:
        frame[column] = frame[column].astype("Int64")
    for column in ("objective", "peak_val_dice", "duration_s"):
        frame[column] = frame[column].astype("float64")
    return frame


def epochs_frame(records: Sequence[StudyRecord]) -> pd.DataFrame:
    """One row per stored epoch of every study, sorted by study, trial number and epoch."""
    parts = []
    for record in sorted(records, key=lambda r: r.name):
        part = record.epochs.copy()
        part["study"] = record.name
        parts.append(part[list(EPOCH_REPORT_COLUMNS)])
    if not parts:
        return pd.DataFrame(columns=list(EPOCH_REPORT_COLUMNS))
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values(["study", "trial_number", "epoch"], kind="stable").reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV with the report's fixed number format, atomically."""
    write_atomic(path, lambda f: frame.to_csv(f, index=False, float_format=FLOAT_FORMAT, lineterminator="\n"))


def _trial_row(
    record: StudyRecord, trial: FrozenTrial, params: Sequence[str], *, continued: set[int]
) -> dict[str, Any]:
    attrs = trial.user_attrs
    epochs = record.epochs[record.epochs["trial_id"] == trial._trial_id]
    epochs_run = len(epochs) or len(trial.intermediate_values)
    dice = epochs["val_dice"].dropna()
    peak = float(dice.max()) if len(dice) else _peak_intermediate(trial)
    images = record.train_images(trial)
    complete = trial.state == TrialState.COMPLETE
    folds = attrs.get(FOLD_VAL_DICE)
    if complete and folds:
        peak = trial.value  # the trial's value, the mean of its folds (the epoch rows are fold 1's)
    row: dict[str, Any] = {
        "study": record.name,
        "number": trial.number,
        "state": trial.state.name,
        "objective": trial.value if complete else None,
        "best_epoch": attrs.get(BEST_EPOCH) if complete else _peak_epoch(epochs),
        **{name: _param_text(trial.params[name]) if name in trial.params else None for name in params},
        "peak_val_dice": peak,
        "fold_val_dice": json.dumps([round(v, 6) for v in folds]) if folds else None,
        "epochs_run": epochs_run,
        "stop_reason": attrs.get(STOP_REASON),
        "stop_epoch": attrs.get(STOP_EPOCH),
        "continued_from": continued_from(attrs),
        "diagnosis": attrs.get(DIAGNOSIS),
        "duration_s": _duration(trial),
        "train_images": images,
        "compute_images": epochs_run * images * (len(folds) if complete and folds else 1)
        if images is not None
        else None,
        "compute_saved_images": _saved(
            record, trial, epochs_run, images, continued=trial.number in continued
        ),
        "datetime_start": _time(trial.datetime_start),
        "datetime_complete": _time(trial.datetime_complete),
        "stop_message": attrs.get(STOP_MESSAGE),
        "diagnosis_summary": attrs.get(DIAGNOSIS_SUMMARY),
        "diagnosis_changes": json.dumps(attrs[DIAGNOSIS_CHANGES], sort_keys=True)
        if attrs.get(DIAGNOSIS_CHANGES)
        else None,
    }
    return row


def _peak_epoch(epochs: pd.DataFrame) -> int | None:
    """The epoch of a stopped trial's highest val Dice (the first of equals), from its epoch rows."""
    dice = epochs[["epoch", "val_dice"]].dropna()
    if dice.empty:
        return None
    return int(dice.sort_values(["val_dice", "epoch"], ascending=[False, True])["epoch"].iloc[0])


def _saved(
    record: StudyRecord, trial: FrozenTrial, epochs_run: int, images: int | None, *, continued: bool
) -> int | None:
    """Images a pruned trial did not train on; 0 for other finished trials and for a paused trial that
    was continued (its continuation trained them), None when unknown. A continuation's own epochs follow
    those it continued after."""
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return None
    if trial.state != TrialState.PRUNED or continued:
        return 0
    if images is None or record.max_epochs is None:
        return None
    return max(record.max_epochs - continued_after(trial) - epochs_run, 0) * images


def _peak_intermediate(trial: FrozenTrial) -> float | None:
    values = [v for v in trial.intermediate_values.values() if math.isfinite(v)]
    return max(values) if values else None


def _param_text(value: Any) -> Any:
    """A parameter as its CSV cell: floats as numbers (formatted by ``write_csv``), the rest as text."""
    if isinstance(value, float):
        return float(FLOAT_FORMAT % value)
    return value if isinstance(value, int | str) and not isinstance(value, bool) else str(value)


def _duration(trial: FrozenTrial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def _time(moment: Any) -> str | None:
    return moment.isoformat(sep=" ", timespec="seconds") if moment is not None else None
