"""``python -m bench --only diagnosis``: crafted runs of known cause, labelled and fixed (``measure``)."""

from __future__ import annotations

from bench.diagnosis import searches
from bench.section import Figures, Meta, RunOptions


class DiagnosisSection:
    """Are the labels right, and does the advice, applied once, make the run healthy?"""

    name = "diagnosis"

    def run(self, options: RunOptions) -> Figures:
        from bench.diagnosis import measure

        return measure.run(quick=options.quick, workers=options.workers, say=options.say)

    def markdown(self, figures: Figures, meta: Meta) -> str:
        return markdown(figures)


def markdown(d: Figures) -> str:
    """The crafted-run table, the two scores against their goals, construction errors apart."""
    goals = d["goals"]
    lines = [
        "## Diagnosis\n",
        f"{d['runs']} crafted runs of known cause (`bench/diagnosis/cases.py`; 32-pixel images, 12 epochs, "
        f"one thread each), {d['constructed']} of them failed (or trained) as intended. "
        f"**Labelled right: {d['right']} of {d['constructed']} ({d['right_share']:.0%}; goal "
        f"{goals['right_share']:.0%})**. **Advice applied once made the run healthy: {d['fixed']} of "
        f"{d['failed_runs']} failed runs ({d['fixed_share']:.0%}; goal {goals['fixed_share']:.0%})**.\n",
    ]
    if d["construction_errors"]:
        lines.append(
            "Construction errors (the run did not show its intended cause; not scored): "
            + ", ".join(f"`{n}`" for n in d["construction_errors"])
            + ".\n"
        )
    lines += [
        "| run | intended | looks like | what the curves showed | label | right | advice applied | after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        follow = r.get("followup") or {}
        after = (
            "-"
            if not follow
            else f"{follow.get('label') or '-'}" + (" (fixed)" if follow.get("fixed") else "")
        )
        right = "yes" if r["right"] else "no"
        if not r["constructed"]:
            right = "construction error"
        lines.append(
            f"| {r['name']} | {r['cause']} | {r['looks_like'] or '-'} | {r['curves']} | {r['label']} | "
            f"{right} | {follow.get('applied', '-') if follow else '-'} | {after} |"
        )
    by_cause = ", ".join(f"{c} {v[0]}/{v[1]}" for c, v in sorted(d["by_cause"].items()))
    lines.append(f"\nRight per cause: {by_cause}.\n")
    if "real_searches" in d:
        lines.append(searches.markdown(d["real_searches"]))
    return "\n".join(lines)
