"""``python -m bench --only flagship``: the Quickstart's study as shipped against random search."""

from __future__ import annotations

from bench.section import Figures, Meta, RunOptions

NAMES = {"ours": "ours (as shipped)", "random": "random, no pruning"}


class FlagshipSection:
    """Best val Dice and compute of ``unet-lr`` as shipped, 5 seeds, against random search at its compute."""

    name = "flagship"

    def run(self, options: RunOptions) -> Figures:
        from bench.flagship import measure

        return measure.run(quick=options.quick, say=options.say)

    def markdown(self, figures: Figures, meta: Meta) -> str:
        """Per seed, both strategies' best val Dice, compute and time; then the medians against the goals."""
        runs, summary = figures["runs"], figures["summary"]
        lines = [
            f"## Flagship: the Quickstart's study as shipped ({meta['date']}, {meta['cpu']}, "
            f"{meta['cores']} CPUs)\n",
            f"`{figures['command']}` in an empty folder, sampler seeds {figures['seeds']}, one search at a "
            "time; the peer is the same study file with pruning off (cross-trial rule `none`, a plateau rule "
            "that never fires), the random sampler with the same seed and the same compute budget. Best val "
            "Dice: the summary's winner (`search.ranking`); compute: epochs trained (the epoch table) in "
            "full trials (max_epochs x training images each).\n",
            "| seed | strategy | best val Dice | compute (full trials) | trials | complete | pruned "
            "| wall s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i, seed in enumerate(figures["seeds"]):
            for strategy, results in runs.items():
                r = results[i]
                lines.append(
                    f"| {seed} | {NAMES.get(strategy, strategy)} | {r['best_dice']} | "
                    f"{r['compute_full_trials']} of {r['budget_full_trials']:g} | {r['trials']} | "
                    f"{r['complete']} | {r['pruned']} | {r['wall_s']} |"
                )
        lines += [
            "",
            "| strategy | best val Dice median [q1, q3] | compute median [q1, q3] | wall s median |",
            "|---|---|---|---|",
        ]
        for strategy, s in summary.items():
            dice, compute = s["best_dice"], s["compute_full_trials"]
            lines.append(
                f"| {NAMES.get(strategy, strategy)} | {dice['median']} [{dice['q1']}, {dice['q3']}] | "
                f"{compute['median']} [{compute['q1']}, {compute['q3']}] | {s['wall_s']['median']} |"
            )
        ours, peer = summary["ours"]["best_dice"]["median"], summary["random"]["best_dice"]["median"]
        met = {True: "met", False: "NOT met"}
        lines += [
            "",
            f"Median best val Dice as shipped: **{ours}** (goal >= {figures['goal_dice']}: "
            f"{met[figures['goal_median_met']]}; before: {figures['before_dice']}, one run at a1fc836); "
            f"random search's median at the same compute: **{peer}** (goal: ours >= random: "
            f"{met[figures['goal_vs_random_met']]}).",
            "",
        ]
        return "\n".join(lines)
