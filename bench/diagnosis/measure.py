"""``python -m bench --only diagnosis``: crafted runs of known cause, their labels, and the advice applied.

For every case of :mod:`bench.diagnosis.cases`: train it, check that its curves show the intended
failure (an independent, looser test per cause: a run that did not fail as intended is a construction
error, reported apart and not scored), diagnose it, and for every failed run apply the diagnosis's
advice once (its ``changes``; for advice about the data, the repaired dataset) and diagnose the
follow-up: fixed when that is ``healthy``.
"""

from __future__ import annotations

import math
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.diagnosis import searches
from bench.diagnosis.cases import CASES, QUICK_CASES, Case
from bench.diagnosis.data import dataset
from search.diagnosis import diagnose
from search.spec.space import nest_settings
from unet.config import TrainConfig
from unet.fit import fit
from unet.model import build_model

GOAL_RIGHT = 0.9
GOAL_FIXED = 0.7
DATA_FIXES = ("data.", "no_signal")  # advice about the data: the follow-up uses the repaired dataset


def train(case: Case, settings: dict[str, Any], data: str) -> tuple[list[dict[str, Any]], str | None]:
    """Train one configuration; its history (EpochRecord dicts) and fit's stop reason."""
    torch.set_num_threads(1)
    train_set, val_set = dataset(data)
    flat = settings | {"model.in_channels": train_set.in_channels, "model.num_classes": 1}
    config = TrainConfig.from_dict(nest_settings(flat))
    model = build_model(config.model)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    if case.init == "dead_stem" and first.bias is not None:  # a convolution before batch norm has no bias
        with torch.no_grad():
            first.bias.fill_(-50.0)
    result = fit(config, train_set, val_set, model=model)
    return [r.to_dict() for r in result.history], result.stop_reason


def constructed(cause: str, history: list[dict[str, Any]], stop: str | None) -> tuple[bool, str]:
    """Whether the curves show the intended cause (a looser test than the diagnosis'), and what they show."""
    col = {k: np.array([float(r[k]) for r in history]) for k in history[0] if k != "val_class_shares"}
    dice = np.nan_to_num(col["val_dice"])
    p, q = col["val_true_fg"][-1], col["val_pred_fg"][-1]
    chance = 2 * p / (1 + p) if math.isfinite(p) else math.nan
    train = col["train_loss"]
    train_fall = (train[0] - np.nanmin(train)) / train[0] if math.isfinite(train[0]) else math.nan
    best_train = _max(col["train_dice"])
    shown = (
        f"{len(dice)} ep, train loss {-train_fall:+.0%}, val Dice best {dice.max():.2f} last {dice[-1]:.2f}, "
        f"train Dice best {best_train:.2f}, fg pred/true {q:.3f}/{p:.3f}"
    )
    if stop == "diverged":
        shown += ", stopped as diverged"
    jumps = [col["val_loss"][i] / col["val_loss"][i - 1] for i in range(1, len(dice))]
    jumps += [train[i] / train[i - 1] for i in range(1, len(dice))]
    checks: dict[str, Callable[[], bool]] = {
        "healthy": lambda: dice.max() >= 0.5,
        "diverged": lambda: (
            stop == "diverged" or not np.isfinite(train).all() or not np.isfinite(col["val_loss"]).all()
        ),
        "stalled": lambda: train_fall < 0.1,
        "input_scale": lambda: (
            col["input_max"][0] > 50 and (dice.max() < 0.5 or dice.max() - dice[-1] >= 0.1)
        ),
        "vanishing_gradients": lambda: (
            _median(col["grad_norm_first"] / col["grad_norm"]) < 1e-2 and dice.max() < 0.5
        ),
        "no_signal": lambda: dice.max() < chance + 0.1,
        "background_only": lambda: dice.max() < 0.1 and q < 0.3 * p,
        "constant_floor": lambda: p >= 0.5 and q >= 0.95 * p and dice.max() < chance + 0.5 * (1 - chance),
        "foreground_flood": lambda: q > 2 * p and dice[-1] < 0.5,
        "unstable": lambda: (
            _max(np.array(jumps)) > 1.5 or _max(col["grad_norm_max"][1:]) > 10 * _median(col["grad_norm"][1:])
        ),
        "overfitting": lambda: col["train_dice"][-1] - dice[-1] > 0.2 and dice.max() - dice[-1] >= 0.03,
        "underfitting": lambda: best_train < 0.5 and train_fall >= 0.05,
    }
    return bool(checks[cause]()), shown


def _max(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if len(finite) else math.nan


def _median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else math.nan


def run_case(case: Case) -> dict[str, Any]:
    started = time.perf_counter()
    settings = case.config_settings()
    history, stop = train(case, settings, case.data)
    ok, shown = constructed(case.cause, history, stop)
    found = diagnose(history, params=settings, stop_reason=stop)
    row: dict[str, Any] = {
        "name": case.name,
        "cause": case.cause,
        "looks_like": case.looks_like,
        "data": case.data,
        "settings": case.settings,
        "constructed": ok,
        "curves": shown,
        "label": found.label,
        "right": found.label == case.cause,
        "summary": found.summary,
        "changes": found.changes,
        "history": history,
        "stop_reason": stop,
    }
    if ok and case.cause != "healthy":
        row["followup"] = follow_up(case, settings, found)
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def follow_up(case: Case, settings: dict[str, Any], found: Any) -> dict[str, Any]:
    """Apply the diagnosis's advice once and diagnose the new run."""
    changes = dict(found.changes)
    data = case.data
    about_data = found.label in ("no_signal", "input_scale") or any(k.startswith("data.") for k in changes)
    if about_data and case.fixed_data is not None:
        data = case.fixed_data
    changes = {k: v for k, v in changes.items() if not k.startswith("data.")}
    if not changes and data == case.data:
        return {"applied": "nothing to apply", "label": None, "fixed": False}
    new_settings = settings | changes
    history, stop = train(case, new_settings, data)
    after = diagnose(history, params=new_settings, stop_reason=stop)
    applied = ", ".join(f"{k}={v}" for k, v in changes.items())
    if data != case.data:
        applied = ", ".join(filter(None, [applied, f"data {data}"]))
    best = max((float(r["val_dice"]) for r in history if math.isfinite(float(r["val_dice"]))), default=0.0)
    return {"applied": applied, "label": after.label, "fixed": after.label == "healthy", "best_dice": best}


def run(*, quick: bool = False, workers: int = 2, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the cases (``QUICK_CASES`` when ``quick``) on ``workers`` processes; the rows and the scores."""
    cases = [c for c in CASES if not quick or c.name in QUICK_CASES]
    for case in cases:  # build every dataset once, before the workers fork
        dataset(case.data)
        if case.fixed_data:
            dataset(case.fixed_data)
    rows: list[dict[str, Any]] = []
    context = multiprocessing.get_context("fork")
    with context.Pool(max(1, workers)) as pool:
        for row in pool.imap(run_case, cases):
            after = row.get("followup", {}).get("label")
            say(f"[diagnosis] {row['name']}: {row['cause']} labelled {row['label']}, advice -> {after}")
            rows.append(row)
    result = {"rows": rows, **score(rows), "quick": quick}
    if not quick:
        with tempfile.TemporaryDirectory(prefix="diagnosis-searches-") as folder:
            result["real_searches"] = searches.run(folder=Path(folder), say=say)
    return result


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Right share of the constructed runs, fixed share of their failed runs' follow-ups."""
    built = [r for r in rows if r["constructed"]]
    failed = [r for r in built if r["cause"] != "healthy"]
    right = sum(r["right"] for r in built)
    fixed = sum(bool(r.get("followup", {}).get("fixed")) for r in failed)
    by_cause: dict[str, list[int]] = {}
    for r in built:
        by_cause.setdefault(r["cause"], [0, 0])
        by_cause[r["cause"]][0] += int(r["right"])
        by_cause[r["cause"]][1] += 1
    return {
        "runs": len(rows),
        "constructed": len(built),
        "construction_errors": [r["name"] for r in rows if not r["constructed"]],
        "right": right,
        "right_share": right / len(built) if built else math.nan,
        "failed_runs": len(failed),
        "fixed": fixed,
        "fixed_share": fixed / len(failed) if failed else math.nan,
        "by_cause": by_cause,
        "goals": {"right_share": GOAL_RIGHT, "fixed_share": GOAL_FIXED},
    }
