"""The single most useful next step for a study, from its trials' diagnoses and parameters.

The most common failure cause among the finished trials, pruned ones included (under successive halving
most trials end at the first rung, diagnosed as ``too_early`` unless one epoch already shows a cause), is
the problem to fix. Where one side of a
searched parameter's range (or one of its choices) holds most of those trials and few others, the step
is to move the space away from it (without cutting off a healthy trial):

    9 of 12 stalled trials had learning rate < 3e-4: raise the space's lower bound of learning_rate to 3e-4

Otherwise the step is the advice those trials' diagnoses give most often. A study whose trials are
healthy gets no step to fix, and says so.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from search.diagnosis import CAUSES
from search.report.findings import Finding, round_between
from search.report.markdown import is_missing

# A condition must hold for this share of the cause's trials...
MIN_COVERAGE = 0.6
# ...the cause must be this share of all trials that meet it (it picks the cause out), and no healthy
# trial may meet it (moving the space must not cut off a configuration that works).
MIN_PRECISION = 0.75
# Fewer trials with the cause than this say nothing.
MIN_TRIALS = 2


def next_step(
    trials: pd.DataFrame, space: Mapping[str, Mapping[str, Any]], *, at_equal_epochs: Sequence[Finding] = ()
) -> str:
    """One sentence: the study's most common failure cause and what to change about the search.

    Args:
        trials: one row per trial with ``state``, ``diagnosis``, optionally ``diagnosis_changes`` and one
            column per parameter of ``space`` (``search.report.tables.trials_frame`` of one study).
        space: the study's searched parameters as stored in its spec.
        at_equal_epochs: the study's rung findings (``search.report.findings.rung_findings``): without a
            failure cause to fix, the first says which settings lag the others at equal epochs.
    """
    finished = trials[trials["state"].isin(("COMPLETE", "PRUNED", "FAIL")) & trials["diagnosis"].notna()]
    causes = Counter(d for d in finished["diagnosis"] if d in CAUSES)
    if not causes:
        if len(finished) == 0:
            return "No trial has been diagnosed yet."
        unclear = int((finished["diagnosis"] == "unclear").sum())
        extra = f" ({unclear} unclear)" if unclear else ""
        return f"No failure cause dominates the {len(finished)} diagnosed trials{extra}: nothing to fix" + (
            _lagging(at_equal_epochs)
        )
    cause, count = causes.most_common(1)[0]
    if count < MIN_TRIALS:
        return f"Only {count} trial shows a failure cause ({cause}): nothing to fix in the space" + (
            _lagging(at_equal_epochs)
        )
    is_cause = (finished["diagnosis"] == cause).tolist()
    healthy = (finished["diagnosis"] == "healthy").tolist()
    best: tuple[int, float, str, str] | None = None
    for name, definition in space.items():
        if name not in finished.columns:
            continue
        for condition, action, members in _conditions(name, definition, finished[name].tolist()):
            matched = sum(m and c for m, c in zip(members, is_cause, strict=True))
            size = sum(members)
            cuts_healthy = any(m and h for m, h in zip(members, healthy, strict=True))
            good = size > 0 and matched >= MIN_COVERAGE * count and matched / size >= MIN_PRECISION
            # Of equal coverage, the condition that cuts off fewest other trials.
            if good and not cuts_healthy and (best is None or (matched, matched / size) > best[:2]):
                best = (matched, matched / size, condition, action)
    if best is not None:
        matched, _, condition, action = best
        return f"{matched} of {count} {cause} trials had {condition}{_when(finished, is_cause)}: {action}."
    advice = _common_advice(finished[finished["diagnosis"] == cause])
    return f"{count} of {len(finished)} trials are {cause}: {advice}."


def _lagging(at_equal_epochs: Sequence[Finding]) -> str:
    """The end of a "nothing to fix" sentence: the first rung finding, if any, as what to look at."""
    if not at_equal_epochs:
        return "."
    return f"; but {at_equal_epochs[0].text}: compare their settings with the others'."


def _when(finished: pd.DataFrame, is_cause: list[bool]) -> str:
    """ " (all in epoch 1)" or " (within N epochs)" for the cause's trials, when the table says."""
    if "epochs_run" not in finished.columns:
        return ""
    ran = [e for e, c in zip(finished["epochs_run"].tolist(), is_cause, strict=True) if c]
    if not ran or any(is_missing(e) for e in ran):
        return ""
    last = int(max(ran))
    return " (all in epoch 1)" if last == 1 else f" (all within {last} epochs)"


def _conditions(
    name: str, definition: Mapping[str, Any], values: list[Any]
) -> list[tuple[str, str, list[bool]]]:
    """(condition in words, action on the space, which trials meet it) for each side or choice."""
    present = [v for v in values if not is_missing(v)]
    numeric = definition.get("type") in ("float", "int") or (
        not definition
        and present
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)
    )
    words = name.removeprefix("model.").replace("_", " ")
    out: list[tuple[str, str, list[bool]]] = []
    if not numeric:
        for choice in sorted({str(v) for v in present}):
            members = [not is_missing(v) and str(v) == choice for v in values]
            out.append((f"{words} {choice}", f"drop {choice} from {name}'s choices", members))
        return out
    distinct = sorted({float(v) for v in present})
    for low, high in itertools.pairwise(distinct):
        cut = round_between(low, high, log=bool(definition.get("log")))
        below = [not is_missing(v) and float(v) <= low for v in values]
        above = [not is_missing(v) and float(v) >= high for v in values]
        out.append((f"{words} < {cut:g}", f"raise the space's lower bound of {name} to {cut:g}", below))
        out.append((f"{words} > {cut:g}", f"lower the space's upper bound of {name} to {cut:g}", above))
    return out


def _common_advice(rows: pd.DataFrame) -> str:
    """The change the cause's diagnoses suggest most often, else the first one's advice in words."""
    if "diagnosis_changes" in rows.columns:
        parsed = [json.loads(c) if isinstance(c, str) else c for c in rows["diagnosis_changes"]]
        changes = Counter(
            ", ".join(f"{k}={v}" for k, v in sorted(c.items()))
            for c in parsed
            if isinstance(c, Mapping) and c
        )
        if changes:
            text, n = changes.most_common(1)[0]
            return (
                f"their diagnoses suggest {text} ({n} of {len(rows)}); fix the space or the fixed settings so"
            )
    summary = next((s for s in rows.get("diagnosis_summary", []) if isinstance(s, str) and s), "")
    return summary.split(": ", 2)[-1] if summary else "see their diagnoses"
