"""What the live tier would need to be conclusive, estimated from one run's replay and live figures.

The live tier compares ``ours`` with random search by the same bootstrap interval as the replay. The
replay's interval for that ratio, from ``n`` seeds, has a log half-width ``w = (ln high - ln low) / 2``;
such a half-width shrinks like ``1 / sqrt(seeds)``, and an interval around a ratio ``R > 1`` excludes 1
once its half-width is below ``ln R``. So about ``n * (w / ln R) ** 2`` seeds per strategy are needed, and
a budget at which nearly every search reaches the target (a search that does not counts as infinite and
makes the upper bound infinite): here the 90th percentile of random search's compute-to-target in the
replay. The wall time is scaled from the live tier's own seconds per full trial of budget.
"""

from __future__ import annotations

import math
from typing import Any

REACHED_SHARE = 0.9  # the live budget should let this share of random searches reach the target


def live_needs(efficiency: dict[str, Any]) -> dict[str, Any] | None:
    """Seeds, budget and wall time a conclusive live tier would take, or None without the figures.

    Args:
        efficiency: the efficiency section of ``python -m bench`` (its synthetic task and its live tier).
    """
    live, task = efficiency.get("live"), efficiency["tasks"]["synthetic"]
    if not live or "ours" not in task["replay"]:
        return None
    unit = task["unit_images"]
    vs_random = task["replay"]["ours"]["speedup"].get("random", {})
    ratio, low, high = (float(vs_random.get(k, "nan")) for k in ("median", "low", "high"))
    replay_seeds = task["replay"]["ours"]["seeds"]
    random_ctt = sorted(
        r["compute_to_target"] / unit if r["compute_to_target"] is not None else math.inf
        for r in task["replay_runs"]
        if r["strategy"] == "random"
    )
    budget = random_ctt[min(math.ceil(REACHED_SHARE * len(random_ctt)) - 1, len(random_ctt) - 1)]
    live_budget = live["runs"][0]["budget"] / unit
    seconds_per_trial = live["seconds"] / (len(live["runs"]) * live_budget)
    out: dict[str, Any] = {
        "replay_ratio": ratio,
        "replay_interval": [low, high],
        "replay_seeds": replay_seeds,
        "budget_trials": budget,
        "live_budget_trials": live_budget,
        "seconds_per_trial": seconds_per_trial,
        "seeds": None,
        "seconds": None,
    }
    if not (ratio > 1 and low > 0 and math.isfinite(high) and math.isfinite(ratio)):
        return out  # the replay itself does not put ours ahead with a finite interval: no seed count helps
    half_width = (math.log(high) - math.log(low)) / 2
    seeds = math.ceil(replay_seeds * (half_width / math.log(ratio)) ** 2)
    out["seeds"] = seeds
    if math.isfinite(budget):
        out["seconds"] = 2 * seeds * budget * seconds_per_trial
    return out


def describe_needs(needs: dict[str, Any]) -> str:
    """One paragraph for the report: why the live tier is not conclusive and what it would take."""
    low, high = needs["replay_interval"]
    head = (
        f"What a conclusive live tier would take: the replay puts `ours` at {needs['replay_ratio']:.3g}x "
        f"random search [{low:.3g}, {high:.3g}] with {needs['replay_seeds']} seeds"
    )
    if needs["seeds"] is None:
        return head + ": not ahead, or without a finite interval, so more seeds would not help."
    budget = needs["budget_trials"]
    text = (
        f"{head}; an interval that excludes 1 at that ratio needs about {needs['seeds']} seeds per strategy, "
        f"and a budget at which {REACHED_SHARE:.0%} of random searches reach the target: "
    )
    if needs["seconds"] is None:
        return text + "more than the replay's budget (random search missed the target too often there)."
    return text + (
        f"{budget:.3g} full trials (this run's live budget: {needs['live_budget_trials']:g}). At this run's "
        f"{needs['seconds_per_trial']:.2g} s of wall time per full trial of live budget, that is about "
        f"2 x {needs['seeds']} searches x {budget:.3g} trials = {needs['seconds'] / 60:.0f} minutes on this "
        "machine, as loaded as it was."
    )
