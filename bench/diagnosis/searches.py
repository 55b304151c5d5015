"""Diagnosis labels of real searches, checked against the trials' curves by a rule of their own.

Shipped studies run as a user runs them (``python -m search.run --study NAME --seed N``, the shipped
defaults: successive halving, Ray, 2 trials at once), each into a SQLite store of its own. Every trial that
finished an epoch is then checked: its diagnosis label (the one the service stored) against its epoch rows,
by the rule below. The rule is written from the labels' definitions (README, Diagnosis; issue 20), not by
calling ``search.diagnosis``, so that a wrong label is not checked against itself:

- reference: M, the median first-epoch val loss of the study's trials;
- **must be ``diverged``**: a non-finite train or val loss, a first-epoch val loss >= 100 x M, a val loss
  >= 100 x the trial's own untrained val loss, or stopped as ``diverged``;
- **``diverged`` needs evidence**: the above, or a val loss >= 10 x M, or a later val loss >= 5 x the
  trial's first-epoch one (pruning's divergence factor);
- **fewer than 3 epochs**: not ``healthy`` (a trend needs 3 epochs);
- **``too_early``**: only with fewer than 3 epochs, and never for a trial that must be ``diverged``;
- **``healthy``**: at least 3 epochs and no divergence evidence.

Other labels (``stalled``, ``behind_peers``, ``unclear``, ...) are checked only by these rules (a short
trial may carry a cause one epoch shows, such as ``behind_peers``); telling them apart needs the
diagnosis' own rules, which the crafted runs (:mod:`bench.diagnosis.section`) score.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

# The rule's numbers (see the module docstring).
MUST_FACTOR = 100.0  # x the study's median first-epoch val loss, or x the trial's untrained val loss
MAY_FACTOR = 10.0  # x the study's median first-epoch val loss
OWN_FACTOR = 5.0  # x the trial's own first-epoch val loss
TREND_EPOCHS = 3  # epochs a trend (and so "healthy") needs

STUDIES = ("unet-smoke", "unet-lr", "unet-full")
SEEDS = (0, 1, 2)


def check_trial(
    label: str | None, rows: Sequence[Mapping[str, Any]], *, stop_reason: str | None, median_first: float
) -> tuple[bool, str]:
    """Whether a trial's label agrees with its curves by the rule, and why not (empty when it does).

    Args:
        label: the stored diagnosis (None: the trial was not diagnosed).
        rows: its epoch rows, in order, with ``train_loss``, ``val_loss`` and ``initial_val_loss``.
        stop_reason: why it was stopped, if it was.
        median_first: the median first-epoch val loss of the study's trials.
    """
    if label is None:
        return False, "not diagnosed"
    val = [_float(r.get("val_loss")) for r in rows]
    train = [_float(r.get("train_loss")) for r in rows]
    untrained = _float(rows[0].get("initial_val_loss")) if rows else math.nan
    median = f"{MUST_FACTOR:g} x the study's median {median_first:.3g}"
    must = [
        why
        for why, holds in (
            ("a non-finite loss", not all(math.isfinite(v) for v in val + train)),
            (f"first-epoch val loss {val[0]:.3g} >= {median}", _ge(val[0], MUST_FACTOR * median_first)),
            (
                f"a val loss >= {MUST_FACTOR:g} x its untrained {untrained:.3g}",
                any(_ge(v, MUST_FACTOR * untrained) for v in val),
            ),
            ("stopped as diverged", stop_reason == "diverged"),
        )
        if holds
    ]
    may = bool(must) or any(_ge(v, MAY_FACTOR * median_first) for v in val)
    may = may or any(_ge(v, OWN_FACTOR * val[0]) for v in val[1:])
    epochs = len(rows)
    if must and label != "diverged":
        return False, f"{label}, but must be diverged: {must[0]}"
    if label == "diverged" and not may:
        return False, "diverged without evidence"
    if label == "healthy" and epochs < TREND_EPOCHS:
        return False, f"healthy after {epochs} epoch(s)"
    if label == "healthy" and may:
        return False, "healthy with a loss that exploded"
    if label == "too_early" and epochs >= TREND_EPOCHS:
        return False, f"too_early after {epochs} epochs"
    return True, ""


def check_study(trials: Sequence[Mapping[str, Any]], epochs: pd.DataFrame) -> list[dict[str, Any]]:
    """Every trial with an epoch row, checked: its number, epochs, label, stop reason and verdict.

    Args:
        trials: ``{"number", "label", "stop_reason"}`` per trial.
        epochs: the study's epoch rows (``trial_number``, ``epoch``, ``train_loss``, ``val_loss``,
            ``initial_val_loss``).
    """
    by_trial = {int(n): group.sort_values("epoch") for n, group in epochs.groupby("trial_number")}
    firsts = [float(g["val_loss"].iloc[0]) for g in by_trial.values()]
    median_first = statistics.median([v for v in firsts if math.isfinite(v)] or [math.nan])
    checked = []
    for trial in trials:
        rows = by_trial.get(int(trial["number"]))
        if rows is None or rows.empty:
            continue
        records = rows.to_dict("records")
        ok, why = check_trial(
            trial["label"], records, stop_reason=trial["stop_reason"], median_first=median_first
        )
        first = float(records[0]["val_loss"])
        checked.append(
            {
                "number": int(trial["number"]),
                "epochs": len(records),
                "label": trial["label"],
                "stop_reason": trial["stop_reason"],
                "first_val_ratio": first / median_first if median_first > 0 else math.nan,
                "agrees": ok,
                "why": why,
            }
        )
    return checked


def read_study(storage_url: str, study: str) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """A study's trials (number, label, stop reason) and epoch rows, read from its store."""
    from search import outcome
    from search.report.data import load_study_record
    from search.store.engine import open_existing_storage
    from search.store.location import StoreLocation

    record = load_study_record(open_existing_storage(StoreLocation.parse(storage_url)), study)
    trials = [
        {"number": t.number, "label": outcome.diagnosis(t), "stop_reason": outcome.stop_reason(t)}
        for t in record.trials
    ]
    return trials, record.epochs


def run_search(study: str, seed: int, folder: Path) -> dict[str, Any]:
    """Run one shipped study with a sampler seed, as a user does, in ``folder``; read and check it."""
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{(folder / 'unet-search.db').resolve()}"
    started = time.perf_counter()
    command = [sys.executable, "-m", "search.run", "--study", study, "--seed", str(seed), "--storage", url]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    (folder / "run.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return {"study": study, "seed": seed, "seconds": seconds, "error": done.stderr.strip()[-500:]}
    trials, epochs = read_study(url, study)
    return {"study": study, "seed": seed, "seconds": round(seconds, 1), "trials": check_study(trials, epochs)}


def score(searches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Agreeing share of the checked trials, and the two counts issue 20's done-when names."""
    checked = [t for s in searches for t in s.get("trials", [])]
    agree = sum(t["agrees"] for t in checked)
    short_healthy = sum(t["label"] == "healthy" and t["epochs"] < TREND_EPOCHS for t in checked)
    exploded = [t for t in checked if _ge(t["first_val_ratio"], MUST_FACTOR)]
    return {
        "searches": len(searches),
        "failed_searches": [f"{s['study']} seed {s['seed']}" for s in searches if "error" in s],
        "trials": len(checked),
        "agree": agree,
        "agree_share": agree / len(checked) if checked else math.nan,
        "short_healthy": short_healthy,
        "exploded": len(exploded),
        "exploded_diverged": sum(t["label"] == "diverged" for t in exploded),
        "labels": dict(pd.Series([t["label"] for t in checked], dtype=object).value_counts()),
        # The margin: first-epoch val loss / the study's median, at most among the trials not labelled
        # diverged, at least among those labelled diverged (NaN: none).
        "max_ratio_not_diverged": _extreme(max, [t for t in checked if t["label"] != "diverged"]),
        "min_ratio_diverged": _extreme(min, [t for t in checked if t["label"] == "diverged"]),
    }


def run(
    *,
    studies: Sequence[str] = STUDIES,
    seeds: Sequence[int] = SEEDS,
    folder: Path,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every study with every seed, one after another, and score the labels of their trials."""
    searches = []
    for study in studies:
        for seed in seeds:
            result = run_search(study, seed, folder / f"{study}-seed{seed}")
            searches.append(result)
            wrong = [t for t in result.get("trials", []) if not t["agrees"]]
            say(
                f"[diagnosis searches] {study} seed {seed}: {len(result.get('trials', []))} trials, "
                f"{len(wrong)} disagree, {result['seconds']:.0f} s"
                + (" (failed)" if "error" in result else "")
            )
    return {"rows": searches, **score(searches)}


def markdown(result: Mapping[str, Any]) -> str:
    """The section's figures and its disagreeing trials."""
    r = result
    lines = [
        "### Diagnosis on real searches\n",
        f"{r['searches']} searches (shipped studies, shipped defaults, sampler seeds), {r['trials']} trials "
        f"that finished an epoch. **Labels that agree with the curves by the rule: {r['agree']} of "
        f"{r['trials']} ({r['agree_share']:.0%})**. Trials under {TREND_EPOCHS} epochs labelled healthy: "
        f"**{r['short_healthy']}**; trials whose first-epoch val loss was >= {MUST_FACTOR:g} x the study's "
        f"median: {r['exploded']}, of them labelled diverged: **{r['exploded_diverged']}**. First-epoch val "
        f"loss over the study's median: at most {r['max_ratio_not_diverged']:.3g} among the trials not "
        f"labelled diverged, at least {r['min_ratio_diverged']:.3g} among those labelled diverged.\n",
        "| study | seed | seconds | trials | epochs run (min-max) | labels | disagree |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in result["rows"]:
        trials = s.get("trials", [])
        if "error" in s:
            lines.append(
                f"| {s['study']} | {s['seed']} | {s['seconds']:.0f} | failed: {s['error'][:80]} | | | |"
            )
            continue
        counts = pd.Series([t["label"] for t in trials], dtype=object).value_counts()
        labels = ", ".join(f"{label} {n}" for label, n in counts.items())
        ran = [t["epochs"] for t in trials]
        wrong = "; ".join(f"#{t['number']}: {t['why']}" for t in trials if not t["agrees"]) or "-"
        span = f"{min(ran)}-{max(ran)}" if ran else "-"
        cells = [s["study"], str(s["seed"]), f"{s['seconds']:.0f}", str(len(trials)), span, labels, wrong]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _extreme(pick: Callable[[list[float]], float], trials: list[Mapping[str, Any]]) -> float:
    ratios = [float(t["first_val_ratio"]) for t in trials if math.isfinite(float(t["first_val_ratio"]))]
    return pick(ratios) if ratios else math.nan


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _ge(value: float, limit: float) -> bool:
    return math.isfinite(value) and math.isfinite(limit) and limit > 0 and value >= limit


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Diagnosis labels of real searches checked against their curves.")
    p.add_argument("--studies", nargs="+", default=list(STUDIES))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--out", type=Path, required=True, help="folder for the stores and result.json")
    args = p.parse_args(argv)
    result = run(studies=args.studies, seeds=args.seeds, folder=args.out)
    (args.out / "result.json").write_text(json.dumps(result, indent=1, default=str))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
