"""Anytime curves of the replay tier: the best val Dice a strategy has found against the compute spent.

A user sets a budget and gets the best model found within it; the curve answers that for every budget
up to the replay's at once. Per strategy, the median over seeds is drawn with the band between the first
and third quartiles. ``analysis.summarize`` gives the same figures at a few points for the report's table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.efficiency.replay import ReplayRun

# The strategies drawn (the rest are in the report's tables): the reference, the strongest peers, ours.
PLOTTED = ("random", "asha", "tpe_hyperband", "smac_bohb", "one_epoch_topk", "ours", "ours_pause")
POINTS = 121  # compute points on the curve


def plot_anytime(runs: Sequence[ReplayRun], *, unit: float, title: str, path: Path) -> None:
    """Write the anytime plot of ``runs`` (every strategy and seed of one task) to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = min(r.budget for r in runs)
    grid = np.linspace(0.0, budget, POINTS)
    figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for name in PLOTTED:
        mine = [r for r in runs if r.strategy == name]
        if not mine:
            continue
        curves = np.asarray([[r.best_at(b) for b in grid] for r in mine])
        q1, median, q3 = np.quantile(curves, [0.25, 0.5, 0.75], axis=0)
        x = grid / unit
        (line,) = axes.plot(x, median, label=f"{name} ({len(mine)} seeds)", linewidth=1.6)
        axes.fill_between(x, q1, q3, color=line.get_color(), alpha=0.12, linewidth=0)
    top = max(r.best_dice for r in runs)
    axes.set_ylim(max(0.0, 0.8 * top), top * 1.02)  # the last stretch, where strategies differ
    axes.set_xlabel("compute spent (full trials: max epochs x training images)")
    axes.set_ylabel("best val Dice so far (median, quartile band)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
