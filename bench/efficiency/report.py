"""The search-efficiency part of ``BENCHMARKS.md``: per task its check and replay table, the live tier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.efficiency.power import describe_needs, live_needs
from bench.section import Figures

# How the tuned defaults were chosen (variants replayed on tuning seeds): written by hand, shown as is.
TUNING = Path(__file__).resolve().parent / "tuning.md"

GOALS = {"vs_random": 3.0, "vs_best_peer": 1.3, "false_kill_rate": 0.02}
VERDICTS = {
    "agrees": "the live tier confirms the replay's ranking",
    "differs": "the live tier CONTRADICTS the replay's ranking",
    "inconclusive": "inconclusive (the live interval includes 1, or no figure on one side)",
}


def markdown(e: Figures) -> str:
    """The section: strategies, each task's table and goals, the live tier, the tuning notes."""
    lines = [
        "## Search efficiency\n",
        "Strategies: " + "; ".join(f"`{k}`: {v}" for k, v in e["strategies"].items()) + ".\n",
        "Replay tier: each strategy searches a table of trained learning curves, two asynchronous workers "
        "on a virtual clock; compute-to-target (the target is 95 % of the table's best Dice) in full "
        "trials; speedups are ratios of medians with 95 % bootstrap intervals. Kill: a trial stopped by the "
        "strategy's rule (for SMAC and the one-epoch screen: given fewer epochs) and never continued "
        "within the budget (a paused trial that is continued later, a screened one trained on, a "
        "configuration SMAC promotes to a higher budget: a delay, not a kill). False kill: a kill while "
        "below the table's top-10 % Dice, though its full-length Dice is in the top 10 % (the rate is of "
        'all kills); "top-10 % killed" also counts those killed after they got there (a plateau stop '
        "after the peak). Best Dice at the shipped budget: the best val Dice found within the Quickstart "
        "study's `budget.compute` (median [first, third quartile] over seeds): what a user gets. Snap: "
        "mean distance from a "
        "proposal to the trained row it ran as (synthetic: decades of learning rate; real images: the "
        "distance of `bench.efficiency.folder_task`), and the median number of distinct rows trained.\n",
    ]
    for name, t in e["tasks"].items():
        lines.append(_efficiency_task(name, t))
    live = e.get("live")
    if live:
        synthetic = e["tasks"]["synthetic"]
        lines += [
            f"### Live tier (synthetic task)\n\nReal searches with the service, one worker each, budget "
            f"{live['runs'][0]['budget'] / synthetic['unit_images']:g} full trials, "
            f"{live['seconds']:.0f} s:\n",
            "| strategy | seeds | compute to target (median) | not reached | best Dice (median) | trials |",
            "|---|---|---|---|---|---|",
        ]
        for name, s in live["strategies"].items():
            lines.append(
                f"| {name} | {s['seeds']} | {_fmt(s['compute_to_target_median'])} | {s['not_reached']} | "
                f"{_fmt(s['best_dice_median'])} | {_fmt(s['trials_median'])} |"
            )
        for name, v in live["vs_random"].items():
            lines.append(
                f"\n`{name}` vs `random`, compute-to-target speedup: live {_interval(v['live'])}, replay "
                f"{_fmt(v['replay'])}: {VERDICTS[v['verdict']]}."
            )
        needs = live_needs(e)
        if needs is not None and live["vs_random"].get("ours", {}).get("verdict") == "inconclusive":
            lines.append("\n" + describe_needs(needs))
        lines.append("")
    if TUNING.is_file():
        lines.append(TUNING.read_text())
    return "\n".join(lines)


def _efficiency_task(name: str, t: dict[str, Any]) -> str:
    check, table = t["task_check"], t["table"]
    classes, high, low = check["classes"], check["classes_highest_third_lr"], check["classes_lowest_third_lr"]
    spearman = ", ".join(f"k={k}: {v}" for k, v in check["spearman_early_final"].items())
    stale = (
        f" Built with unet/ sources `{table['unet_sources']}`, now `{table['unet_sources_now']}`: the curves "
        "predate the current training code (delete the cached table to rebuild it)."
        if table.get("unet_sources") and table["unet_sources"] != table.get("unet_sources_now")
        else ""
    )
    lines = [
        f"### Task `{name}`\n",
        f"{t['description']}; table `{table['key']}` "
        f"({'read from the cache' if table['cached'] else 'built'}, {table['build_seconds']:.0f} s to build)."
        f"{stale}\n",
        "**Is it hard?** "
        f"Best Dice {check['best_dice']}; target (95 %) {check['target_dice']}, reached by "
        f"{check['share_reaching_target']:.1%} of configurations. Diverged {classes['diverged']:.1%}, "
        f"background only {classes['background']:.1%}, stalled {classes['stalled']:.1%}, healthy "
        f"{classes['healthy']:.1%}. Highest third of learning rates: "
        f"{high['diverged'] + high['background']:.0%} diverged or background only; lowest third: "
        f"{low['stalled']:.0%} stalled. Late bloomers (below the median at epoch {check['early_epoch']}, "
        f"top quarter at the end): {check['late_bloomers']:.1%}. Spearman rank correlation of the Dice at "
        f"epoch k with the final Dice: {spearman}.\n",
        f"Budget {t['budget_trials']:g} full trials ({t['unit_images']} images each); the shipped budget "
        f"(`budget.compute` of `unet-lr`): {_fmt(t.get('shipped_budget_trials'))} full trials.\n",
        "| strategy | seeds | compute to target | not reached | vs random | vs TPE+Hyperband | vs TPE+Median "
        "| best Dice at the shipped budget | best Dice at budget | best COMPLETE | compute on pruned "
        "| false-kill rate | continued | top-10 % killed | snap | rows |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for strategy, s in t["replay"].items():
        sp = s["speedup"]
        lines.append(
            f"| {strategy} | {s['seeds']} | {_fmt(s['compute_to_target_median'])} | {s['not_reached']} | "
            f"{_interval(sp.get('random'))} | {_interval(sp.get('tpe_hyperband'))} | "
            f"{_interval(sp.get('tpe_median'))} | {_quartiles(s['best_at_shipped'])} | "
            f"{s['best_dice_median']} | {s['best_complete_median']} | {s['pruned_compute_share']:.0%} | "
            f"{s['false_kill_rate']:.1%} ({s['false_kills']}/{s['killed']}) | "
            f"{s['continued']}/{s['pruned_by_rule']} | {s['top_killed_rate']:.1%} | "
            f"{s.get('snap_distance_mean', '-')} | {_fmt(s.get('rows_seen_median', '-'))} |"
        )
    for name in ("ours", "ours_pause"):
        if name in t["replay"]:
            lines.append("\n" + _goals(name, t["replay"]))
    lines.append("\n" + _anytime(t))
    d = t["our_defaults"]
    lines.append(
        f"Our defaults in this run: plateau {d['pruning']['plateau']}, cross-trial "
        f"{d['pruning']['cross_trial']}, sampler {d['sampler']}.\n"
    )
    return "\n".join(lines)


def _goals(name: str, replay: dict[str, Any]) -> str:
    """The issue's goals for one of our strategies on one task: met or NOT met, with the figures."""
    ours = replay[name]
    vs_r, peer = ours["speedup"].get("random"), ours.get("best_peer")

    def met(s: dict[str, Any] | None, goal: float) -> str:
        if not s:
            return "n/a"
        ok = _num(s["median"]) >= goal and _num(s["low"]) > 1
        return f"{'met' if ok else 'NOT met'} ({_interval(s)})"

    fk_ok = ours["false_kill_rate"] <= GOALS["false_kill_rate"]
    mine = ours["best_at_shipped"]["median"]
    others = {k: v["best_at_shipped"]["median"] for k, v in replay.items() if not k.startswith("ours")}
    beaten_by = [k for k, v in others.items() if v > mine]
    at_budget = "met" if not beaten_by else f"NOT met (higher: {', '.join(beaten_by)})"
    peer_part = (
        f">= {GOALS['vs_best_peer']:g}x vs the best peer (`{peer['name']}`) with the interval above 1: "
        f"{met(peer, GOALS['vs_best_peer'])}; "
        if peer
        else ""
    )
    return (
        f"Goals for `{name}`: median best Dice at the shipped budget at least every peer's: {at_budget} "
        f"({mine}); >= {GOALS['vs_random']:g}x vs random with the interval above 1: "
        f"{met(vs_r, GOALS['vs_random'])}; {peer_part}false-kill rate <= "
        f"{GOALS['false_kill_rate']:.0%}: {'met' if fk_ok else 'NOT met'} ({ours['false_kill_rate']:.1%})."
    )


def _anytime(t: dict[str, Any]) -> str:
    """The anytime curve at its points (median best Dice over seeds), and where its plot is."""
    replay = t["replay"]
    points = [p["budget"] for p in next(iter(replay.values()))["anytime"]]
    lines = [
        "Anytime: the median best val Dice found within each compute budget (full trials); the plot "
        f"`{t.get('anytime_plot', '-')}` (in the results folder) draws it with quartile bands.\n",
        "| strategy | " + " | ".join(f"{_fmt(b)}" for b in points) + " |",
        "|---|" + "---|" * len(points),
    ]
    for name, s in replay.items():
        lines.append(f"| {name} | " + " | ".join(f"{p['median']:.4f}" for p in s["anytime"]) + " |")
    return "\n".join(lines) + "\n"


def _quartiles(q: dict[str, Any]) -> str:
    return f"{q['median']:.4f} [{q['q1']:.4f}, {q['q3']:.4f}]"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _interval(s: dict[str, Any] | None) -> str:
    if not s:
        return "-"
    return f"{_fmt(s['median'])} [{_fmt(s['low'])}, {_fmt(s['high'])}]"


def _num(value: Any) -> float:
    return float(value) if not isinstance(value, str) else float(value.replace("inf", "inf"))
