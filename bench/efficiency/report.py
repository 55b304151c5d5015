"""The search-efficiency part of ``BENCHMARKS.md``: per task its check and replay table, the live tier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.efficiency.power import describe_needs, live_needs
from bench.section import Figures

# How the tuned defaults were chosen (variants replayed on tuning seeds): written by hand, shown as is.
TUNING = Path(__file__).resolve().parent / "tuning.md"

GOALS = {"vs_random": 3.0, "vs_tpe_hyperband": 1.3, "false_prune_rate": 0.05}
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
        "trials; speedups are ratios of medians with 95 % bootstrap intervals. False prune: stopped by the "
        "strategy's pruning (for SMAC: given fewer epochs by Hyperband) while below the table's top-10 % "
        'Dice, though its full-length Dice is in the top 10 %; "top-10 % stopped" also counts those '
        "stopped after they got there (a plateau stop after the peak). Snap: mean distance from a "
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
        f"Budget {t['budget_trials']:g} full trials ({t['unit_images']} images each).\n",
        "| strategy | seeds | compute to target | not reached | vs random | vs TPE+Hyperband | vs TPE+Median "
        "| best Dice at budget | best COMPLETE | compute on pruned | false-prune rate | top-10 % stopped "
        "| snap | rows |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for strategy, s in t["replay"].items():
        sp = s["speedup"]
        lines.append(
            f"| {strategy} | {s['seeds']} | {_fmt(s['compute_to_target_median'])} | {s['not_reached']} | "
            f"{_interval(sp.get('random'))} | {_interval(sp.get('tpe_hyperband'))} | "
            f"{_interval(sp.get('tpe_median'))} | {s['best_dice_median']} | {s['best_complete_median']} | "
            f"{s['pruned_compute_share']:.0%} | {s['false_prune_rate']:.1%} "
            f"({s['false_prunes']}/{s['pruned_by_rule']}) | {s['top_pruned_rate']:.1%} | "
            f"{s.get('snap_distance_mean', '-')} | {_fmt(s.get('rows_seen_median', '-'))} |"
        )
    ours = t["replay"].get("ours")
    if ours:
        lines.append("\n" + _goals(ours) + "\n")
    d = t["our_defaults"]
    lines.append(
        f"Our defaults in this run: plateau {d['pruning']['plateau']}, cross-trial "
        f"{d['pruning']['cross_trial']}, sampler {d['sampler']}.\n"
    )
    return "\n".join(lines)


def _goals(ours: dict[str, Any]) -> str:
    vs_r, vs_h = ours["speedup"].get("random"), ours["speedup"].get("tpe_hyperband")

    def met(s: dict[str, Any] | None, goal: float) -> str:
        if not s:
            return "n/a"
        ok = _num(s["median"]) >= goal and _num(s["low"]) > 1
        return f"{'met' if ok else 'NOT met'} ({_interval(s)})"

    fp_ok = ours["false_prune_rate"] <= GOALS["false_prune_rate"]
    return (
        f"Goals for `ours`: >= {GOALS['vs_random']:g}x vs random with the interval above 1: "
        f"{met(vs_r, GOALS['vs_random'])}; >= {GOALS['vs_tpe_hyperband']:g}x vs stock TPE+Hyperband with the "
        f"interval above 1: {met(vs_h, GOALS['vs_tpe_hyperband'])}; false-prune rate <= "
        f"{GOALS['false_prune_rate']:.0%}: {'met' if fp_ok else 'NOT met'} ({ours['false_prune_rate']:.1%})."
    )


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
