"""``python -m bench --only orchestration``: per-trial overhead of the backends (``measure``)."""

from __future__ import annotations

from typing import Any

from bench.section import Figures, Meta, RunOptions


class OrchestrationSection:
    """The Ray backend's per-trial overhead against the local backend's, on trivial trials."""

    name = "orchestration"

    def run(self, options: RunOptions) -> Figures:
        from bench.orchestration import measure

        return measure.run(quick=options.quick)

    def markdown(self, figures: Figures, meta: Meta) -> str:
        """The standalone table (:func:`markdown`) with its heading one level down."""
        own = {
            "date": meta["date"],
            "machine": meta["cpu"],
            "cpus": meta["cores"],
            "ray": meta["versions"]["ray"],
        }
        return "#" + markdown(figures, own)


def markdown(figures: Figures, meta: dict[str, Any]) -> str:
    """The table of ``python -m bench.orchestration``; ``meta``: date, machine, cpus and ray version."""
    rows = [(name, f) for name, f in figures.items() if isinstance(f, dict)]
    lines = [
        f"# Orchestration overhead per trial ({meta['date']}, {meta['machine']}, {meta['cpus']} CPUs, "
        f"ray {meta['ray']})\n",
        "Trivial 1-epoch trials, one at a time; overhead = wall time minus training time (epoch table).\n",
        "| backend | trials | wall s | train s | overhead / trial s | steady overhead / trial s | "
        "startup s | shutdown s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, f in rows:
        lines.append(
            f"| {name} | {f['trials']} | {f['wall_s']} | {f['train_s']} | {f['overhead_per_trial_s']} | "
            f"{f['steady_overhead_per_trial_s']} | {f['startup_s']} | {f['shutdown_s']} |"
        )
    met = "met" if figures["goal_met"] else "NOT met"
    lines += [
        "",
        f"Ray steady overhead per trial: **{figures['ray']['steady_overhead_per_trial_s']} s** "
        f"(goal <= {figures['goal_s']} s: {met}); Ray minus local: {figures['ray_minus_local_steady_s']} s.",
        "",
    ]
    return "\n".join(lines)
