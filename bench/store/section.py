"""``python -m bench --only store``: what the store's writes cost on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from typing import Any

from bench.section import Figures, Meta, RunOptions


class StoreSection:
    """Write costs, concurrent workers, growth to 10,000 trials and (servers) many workers on one budget."""

    name = "store"

    def run(self, options: RunOptions) -> Figures:
        from bench.store import measure

        if options.quick:
            return measure.run(
                worker_counts=(2,), sizes=(10, 100), trials=2, epochs=2, load_workers=4, on_step=options.say
            )
        return measure.run(on_step=options.say)

    def markdown(self, figures: Figures, meta: Meta) -> str:
        return markdown(figures)


def markdown(s: Figures) -> str:
    """Write costs, concurrent workers and growth per backend; then the load run on the servers."""
    lines = [
        "## Store\n",
        "Per backend: one epoch written (epoch row + report), one trial (ask, 2 parameters, tell), and the "
        "full store traffic of a service trial (reap, claim lock + count + ask, heartbeat, epochs, "
        "attributes, tell) with concurrent worker processes on one study, then in a study already "
        "holding N finished trials (cold: a worker's first trial, which reads the study; warm: the next).\n",
        "| backend | epoch (ms) | trial (ms) | workers: trials/s (median ms/trial, errors) | "
        "study size: cold / warm ms per trial |",
        "|---|---|---|---|---|",
    ]
    for backend, entry in s.items():
        if "error" in entry:
            lines.append(f"| {backend} | failed: `{entry['error']}` | | | |")
            continue
        w = entry["write"]
        workers = "; ".join(
            f"{x['workers']}: {x['trials_per_s']} ({x['trial_ms_median']:.0f}, {x['errors']})"
            for x in entry["workers"]
        )
        growth = "; ".join(
            f"{g['trials_in_study']:,}: {g['cold_trial_ms']:.0f} / {g['warm_trial_ms']:.0f}"
            for g in entry["growth"]
        )
        lines.append(f"| {backend} | {w['epoch_ms']} | {w['trial_ms']} | {workers} | {growth} |")
    errors = [(b, x) for b, e in s.items() if "workers" in e for x in e["workers"] if x["errors"]]
    lines.append(
        "\nConcurrent-worker errors: "
        + (
            "none (goal: none)."
            if not errors
            else "; ".join(f"{b} x{x['workers']}: {x['errors']} ({x['error_examples']})" for b, x in errors)
        )
        + "\n"
    )
    return "\n".join(lines) + _store_load(s)


def _store_load(s: dict[str, Any]) -> str:
    loads = {backend: entry["load"] for backend, entry in s.items() if "load" in entry}
    if not loads:
        return ""
    lines = [
        "\n### Under load\n",
        "Worker processes started together on one study with a budget and 3 lost trials to reap "
        "(`bench/store/load.py`; tiny trials, so the store is the bottleneck). Checks: exact trial "
        "count, no duplicate numbers, each lost trial failed once and retried once, nothing left "
        "RUNNING, every epoch row, no exception.\n",
        "| backend | workers | trials | trials/s | store ms per trial p50 / p95 | errors |",
        "|---|---|---|---|---|---|",
    ]
    for backend, x in loads.items():
        problems = f" {x['error_examples']}" if x["errors"] else ""
        lines.append(
            f"| {backend} | {x['workers']} | {x['n_trials']} | {x['trials_per_s']} | "
            f"{x['trial_ms_p50']:.0f} / {x['trial_ms_p95']:.0f} | {x['errors']}{problems} |"
        )
    return "\n".join(lines) + "\n"
