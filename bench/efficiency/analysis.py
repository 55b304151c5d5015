"""Figures from the table and from the replays: is the task hard, and how fast does each strategy get there.

Task check (``describe_task``): each row is put in one class, checked in this order,

- ``diverged``: ``fit`` stopped it as diverged, a val loss was NaN/inf, or a val loss rose above
  ``DIVERGENCE_FACTOR`` times its first value (the plateau rule's default);
- ``background``: its last epoch's Dice is below ``BACKGROUND_DICE`` (it predicts background only);
- ``stalled``: its full-length Dice is below ``STALLED_SHARE`` of the table's best (it learns, slowly);
- ``healthy``: the rest;

and a ``late bloomer`` is a row below the median Dice at ``EARLY_EPOCH`` that ends in the top quarter.
The Spearman rank correlation between the Dice at an early epoch and the full-length Dice says how much
an early look can tell (1: the early ranking is the final one).

Strategies (``summarize``): the compute-to-target speedup of a strategy against a reference is the
reference's median compute-to-target over seeds divided by the strategy's, with a 95 % percentile
bootstrap interval (seeds resampled with replacement, independently per strategy). A run that never
reached the target within the budget counts as infinite compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.efficiency.replay import ReplayRun
from bench.efficiency.table import Row, Table

DIVERGENCE_FACTOR = 5.0
BACKGROUND_DICE = 0.05
STALLED_SHARE = 0.5
EARLY_EPOCH = 3
BOOTSTRAP_SAMPLES = 4000


def row_class(row: Row, table_best: float) -> str:
    """``diverged``, ``background``, ``stalled`` or ``healthy`` (see the module docstring)."""
    first = row.val_loss[0]
    blew_up = any(
        not math.isfinite(v) or (math.isfinite(first) and first > 0 and v > DIVERGENCE_FACTOR * first)
        for v in row.val_loss
    )
    if row.stop_reason == "diverged" or blew_up:
        return "diverged"
    if row.val_dice[-1] < BACKGROUND_DICE:
        return "background"
    if row.best_dice < STALLED_SHARE * table_best:
        return "stalled"
    return "healthy"


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their average rank); NaN when either side is constant."""
    rx, ry = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):  # average rank for ties
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def dice_at(row: Row, epoch: int) -> float:
    """The row's Dice at ``epoch`` (its last epoch's if it stopped before; NaN counts as 0)."""
    value = row.val_dice[min(epoch, len(row.val_dice)) - 1]
    return value if math.isfinite(value) else 0.0


def describe_task(table: Table) -> dict[str, Any]:
    """Shares of each row class (overall and by learning-rate third), late bloomers, rank correlations."""
    best, rows = table.best_dice, table.rows
    classes = [row_class(row, best) for row in rows]
    lrs = sorted(set(table.task.learning_rates))
    third = max(len(lrs) // 3, 1)
    low, high = set(lrs[:third]), set(lrs[-third:])

    def shares(selected: list[int]) -> dict[str, float]:
        n = max(len(selected), 1)
        return {c: round(sum(classes[i] == c for i in selected) / n, 3) for c in _CLASSES}

    everyone = list(range(len(rows)))
    early = [dice_at(row, EARLY_EPOCH) for row in rows]
    final = [row.best_dice for row in rows]
    early_median = float(np.median(early))
    top_quarter = sorted(final, reverse=True)[max(len(final) // 4 - 1, 0)]
    bloomers = [i for i in everyone if early[i] < early_median and final[i] >= top_quarter]
    epochs = table.task.epochs
    return {
        "rows": len(rows),
        "best_dice": round(best, 4),
        "target_dice": round(0.95 * best, 4),
        "share_reaching_target": round(sum(f >= 0.95 * best for f in final) / len(rows), 3),
        "classes": shares(everyone),
        "classes_lowest_third_lr": shares([i for i in everyone if rows[i].params["learning_rate"] in low]),
        "classes_highest_third_lr": shares([i for i in everyone if rows[i].params["learning_rate"] in high]),
        "late_bloomers": round(len(bloomers) / len(rows), 3),
        "late_bloomer_examples": [rows[i].params for i in bloomers[:3]],
        "early_epoch": EARLY_EPOCH,
        "spearman_early_final": {
            str(e): round(spearman([dice_at(r, e) for r in rows], final), 3)
            for e in sorted({1, 2, EARLY_EPOCH, max(epochs // 2, 1)})
            if e <= epochs
        },
    }


_CLASSES = ("diverged", "background", "stalled", "healthy")


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if len(values) else math.nan


def speedup(reference: Sequence[float], other: Sequence[float], *, seed: int = 0) -> dict[str, float | str]:
    """Median(reference) / median(other) of compute-to-target, with a 95 % bootstrap interval.

    Args:
        reference: the reference strategy's compute-to-target per seed (inf: not reached).
        other: the strategy's, per seed.
        seed: the bootstrap's random seed.
    """
    ref, oth = np.asarray(reference, dtype=float), np.asarray(other, dtype=float)
    rng = np.random.default_rng(seed)
    ref_medians = np.median(rng.choice(ref, size=(BOOTSTRAP_SAMPLES, len(ref))), axis=1)
    oth_medians = np.median(rng.choice(oth, size=(BOOTSTRAP_SAMPLES, len(oth))), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = ref_medians / oth_medians
        point = _median(ref) / _median(oth)
    ratios = np.sort(np.where(np.isnan(ratios), 1.0, ratios))  # inf / inf: neither reached: a tie
    # Order statistics rather than interpolation, which turns inf into NaN.
    low = ratios[int(0.025 * len(ratios))]
    high = ratios[math.ceil(0.975 * len(ratios)) - 1]
    return {"median": _finite(point), "low": _finite(float(low)), "high": _finite(float(high))}


def _finite(value: float) -> float | str:
    """JSON-safe: finite numbers rounded, inf and NaN as strings."""
    return round(value, 3) if math.isfinite(value) else str(value)


def summarize(
    runs: Sequence[ReplayRun],
    *,
    unit: float,
    shipped: float | None = None,
    references: Sequence[str] = ("random", "tpe_hyperband", "tpe_median"),
) -> dict[str, dict[str, Any]]:
    """Per strategy: compute-to-target (in ``unit``s, e.g. full trials), speedups, Dice, pruning figures,
    the best Dice at the shipped budget and at the points of the anytime curve.

    Args:
        runs: every replay, all strategies and seeds.
        unit: images per reported compute unit (e.g. epochs x images of one full trial).
        shipped: the shipped study's budget in ``unit``s (``budget.compute`` of the Quickstart's study);
            None or above the replay's budget: the replay's budget.
        references: strategies to compute speedups against.
    """
    by_strategy: dict[str, list[ReplayRun]] = {}
    for run in runs:
        by_strategy.setdefault(run.strategy, []).append(run)
    ctt = {
        name: [r.compute_to_target if r.compute_to_target is not None else math.inf for r in rs]
        for name, rs in by_strategy.items()
    }
    out: dict[str, dict[str, Any]] = {}
    for name, rs in by_strategy.items():
        killed = sum(r.killed for r in rs)
        values = np.asarray(ctt[name]) / unit
        budget = min(r.budget for r in rs) / unit
        at = min(shipped, budget) if shipped is not None else budget
        out[name] = {
            "seeds": len(rs),
            "compute_to_target_median": _finite(_median(values)),
            "not_reached": int(np.sum(~np.isfinite(values))),
            "speedup": {
                ref: speedup(ctt[ref], ctt[name]) for ref in references if ref in ctt and ref != name
            },
            "best_dice_median": round(_median(np.asarray([r.best_dice for r in rs])), 4),
            "best_complete_median": round(_median(np.asarray([r.best_complete for r in rs])), 4),
            "trials_median": _median(np.asarray([r.trials for r in rs])),
            # Snapping check: how far proposals moved to a trained row, and how many rows were trained.
            "snap_distance_mean": round(
                sum(r.snap_distance for r in rs) / max(sum(r.trials for r in rs), 1), 3
            ),
            "rows_seen_median": _median(np.asarray([r.rows_seen for r in rs])),
            "pruned_compute_share": round(sum(r.pruned_compute for r in rs) / sum(r.budget for r in rs), 3),
            "pruned_by_rule": sum(r.pruned_by_rule for r in rs),
            "continued": sum(r.continued for r in rs),
            "killed": killed,
            "false_kills": sum(r.false_kills for r in rs),
            "false_kill_rate": round(sum(r.false_kills for r in rs) / killed, 4) if killed else 0.0,
            "top_killed": sum(r.top_killed for r in rs),
            "top_killed_rate": round(sum(r.top_killed for r in rs) / killed, 4) if killed else 0.0,
            "best_at_shipped": {"budget": round(at, 3), **quartiles([r.best_at(at * unit) for r in rs])},
            "anytime": [
                {"budget": round(b, 3), **quartiles([r.best_at(b * unit) for r in rs])}
                for b in anytime_points(budget)
            ],
        }
    peers = [name for name in out if not name.startswith(OURS)]
    if peers:  # the peer that reaches the target with the least compute (median, then fewest misses)
        best = min(peers, key=lambda n: (_num(out[n]["compute_to_target_median"]), out[n]["not_reached"]))
        for name in out:
            if name.startswith(OURS):
                out[name]["best_peer"] = {"name": best, **speedup(ctt[best], ctt[name])}
    return out


OURS = "ours"  # the prefix of our strategies (ours, ours_pause, ours_before); every other one is a peer


def _num(value: float | str) -> float:
    return float(value)


def anytime_points(budget: float) -> list[float]:
    """Where the anytime curve is read, in full trials: 1, 2, 4, ... below ``budget``, then ``budget``."""
    points, b = [], 1.0
    while b < budget:
        points.append(b)
        b *= 2
    return [*points, budget]


def quartiles(values: Sequence[float]) -> dict[str, float]:
    """Median and the first and third quartiles (linear interpolation), rounded to 4 digits."""
    q1, median, q3 = np.quantile(np.asarray(values, dtype=float), [0.25, 0.5, 0.75])
    return {"median": round(float(median), 4), "q1": round(float(q1), 4), "q3": round(float(q3), 4)}
