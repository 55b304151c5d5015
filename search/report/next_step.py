"""The single most useful next step for a study, from its trials' diagnoses and parameters.

The most common failure cause among the finished trials, pruned ones included (under successive halving
most trials end at the first rung, diagnosed as ``too_early`` unless one epoch already shows a cause), is
the problem to fix. Where one side of a
searched parameter's range (or one of its choices) holds most of those trials and few others, the step
is to move the space away from it (without cutting off a healthy trial):

    9 of 12 stalled trials had learning rate < 3e-4: raise the space's lower bound of learning_rate to 3e-4

A failure finding (``search.report.findings``) about the cause that holds more of its trials is the step
instead, such as a range that failed for some optimizers only; every step that changes the space names the
study file's space entry to paste (or, for a range within some values of another parameter, which a study
file cannot express, the three edits it can make). Otherwise the step is the advice those trials'
diagnoses give most often. A study whose trials are
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
from search.report.findings import Finding
from search.report.groups import round_between
from search.report.markdown import is_missing

# A condition must hold for this share of the cause's trials...
MIN_COVERAGE = 0.6
# ...the cause must be this share of all trials that meet it (it picks the cause out), and no healthy
# trial may meet it (moving the space must not cut off a configuration that works).
MIN_PRECISION = 0.75
# Fewer trials with the cause than this say nothing.
MIN_TRIALS = 2


def next_step(
    trials: pd.DataFrame, space: Mapping[str, Mapping[str, Any]], *, findings: Sequence[Finding] = ()
) -> str:
    """One sentence: the study's most common failure cause, what to change about the search and how the
    study file's space says it.

    Args:
        trials: one row per trial with ``state``, ``diagnosis``, optionally ``diagnosis_changes`` and one
            column per parameter of ``space`` (``search.report.tables.trials_frame`` of one study).
        space: the study's searched parameters as stored in its spec.
        findings: the study's findings (``search.report.findings.find_findings`` and ``rung_findings``).
            A failure finding about the cause that holds ``MIN_COVERAGE`` of its trials, and more of them
            than this module's own one-parameter condition, is the step (a range that failed for some
            values of another parameter only is one); without a failure cause to fix, the first rung
            finding says which settings lag the others at equal epochs.
    """
    lagging = [f for f in findings if f.at_equal_epochs]
    finished = trials[trials["state"].isin(("COMPLETE", "PRUNED", "FAIL")) & trials["diagnosis"].notna()]
    causes = Counter(d for d in finished["diagnosis"] if d in CAUSES)
    if not causes:
        if len(finished) == 0:
            return "No trial has been diagnosed yet."
        unclear = int((finished["diagnosis"] == "unclear").sum())
        extra = f" ({unclear} unclear)" if unclear else ""
        return f"No failure cause dominates the {len(finished)} diagnosed trials{extra}: nothing to fix" + (
            _lagging(lagging)
        )
    cause, count = causes.most_common(1)[0]
    if count < MIN_TRIALS:
        return f"Only {count} trial shows a failure cause ({cause}): nothing to fix in the space" + (
            _lagging(lagging)
        )
    is_cause = (finished["diagnosis"] == cause).tolist()
    best = _best_condition(finished, space, is_cause, count)
    finding = next(
        (
            f
            for f in findings
            if f.action and f.change and cause in f.labels and f.matched >= MIN_COVERAGE * count
        ),
        None,
    )
    if finding is not None and (best is None or finding.matched > best[0]):
        when = "" if finding.last_epoch is None else _epochs_text(finding.last_epoch)
        step = f"{finding.matched} of {count} {cause} trials had {finding.condition}{when}: {finding.action}."
        return f"{step} {study_file_edit(finding, space)}"
    if best is not None:
        matched, _, condition, action, name, change = best
        edit = f" ({_in_space(name, space.get(name, {}), change)})" if space.get(name) else ""
        when = _when(finished, is_cause)
        return f"{matched} of {count} {cause} trials had {condition}{when}: {action}{edit}."
    advice = _common_advice(finished[finished["diagnosis"] == cause])
    return f"{count} of {len(finished)} trials are {cause}: {advice}."


_Condition = tuple[int, float, str, str, str, tuple[str, Any]]


def _best_condition(
    finished: pd.DataFrame, space: Mapping[str, Mapping[str, Any]], is_cause: list[bool], count: int
) -> _Condition | None:
    """The side or choice of one parameter that holds most of the cause's trials and no healthy one."""
    healthy = (finished["diagnosis"] == "healthy").tolist()
    best: _Condition | None = None
    for name, definition in space.items():
        if name not in finished.columns:
            continue
        for condition, action, members, change in _conditions(name, definition, finished[name].tolist()):
            matched = sum(m and c for m, c in zip(members, is_cause, strict=True))
            size = sum(members)
            cuts_healthy = any(m and h for m, h in zip(members, healthy, strict=True))
            good = size > 0 and matched >= MIN_COVERAGE * count and matched / size >= MIN_PRECISION
            # Of equal coverage, the condition that cuts off fewest other trials.
            if good and not cuts_healthy and (best is None or (matched, matched / size) > best[:2]):
                best = (matched, matched / size, condition, action, name, change)
    return best


def study_file_edit(finding: Finding, space: Mapping[str, Mapping[str, Any]]) -> str:
    """How the study file's space says a failure finding's change, as YAML to paste."""
    assert finding.change is not None  # internal: only failure findings with a change get here
    definition = space.get(finding.param, {})
    if not finding.given:
        if not definition:
            return ""
        return f"In the study file's space: `{_entry(finding.param, definition, finding.change)}`."
    side, cut = finding.change
    given_definition = space.get(finding.given, {})
    chosen = [_value(v) for v in finding.given_values]
    rest = [v for v in given_definition.get("choices", ()) if v not in finding.given_values]
    where = "above" if side == "high" else "below"
    narrowed = _entry(finding.param, definition, finding.change)
    dropped = _entry(finding.given, given_definition, ("drop", finding.given_values))
    return (
        f"A study file cannot make {finding.param}'s range depend on {finding.given}, so in its space either "
        f"set `{narrowed}` (which also leaves out {finding.given} {' and '.join(_value(v) for v in rest)} "
        f"{where} {_value(cut)}), or drop {' and '.join(chosen)} (`{dropped}`), or split it into two study "
        f"files: one with {finding.given} "
        f"[{', '.join(chosen)}] and {finding.param} {side} {_value(cut)}, one with "
        f"[{', '.join(_value(v) for v in rest)}] and the range as it is."
    )


def _in_space(name: str, definition: Mapping[str, Any], change: tuple[str, Any]) -> str:
    return f"in the study file's space: `{_entry(name, definition, change)}`"


def _entry(name: str, definition: Mapping[str, Any], change: tuple[str, Any]) -> str:
    """One space entry as YAML flow, with the change applied: ``learning_rate: {type: float, ...}``."""
    side, value = change
    changed = dict(definition)
    if side == "drop":
        gone = value if isinstance(value, tuple) else (value,)
        changed["choices"] = [c for c in definition.get("choices", ()) if c not in gone]
    else:
        changed[side] = value
    body = ", ".join(f"{key}: {_yaml(v)}" for key, v in changed.items() if v is not None)
    return f"{name}: {{{body}}}"


def _yaml(value: Any) -> str:
    """A value as YAML reads it back: booleans lower case, floats with a mantissa point (PyYAML reads
    ``1e-05`` as a string but ``1.0e-05`` as a number)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return f"[{', '.join(_yaml(v) for v in value)}]"
    if isinstance(value, float):
        text = f"{value:g}"
        mantissa, _, exponent = text.partition("e")
        return f"{mantissa}.0e{exponent}" if exponent and "." not in mantissa else text
    return str(value)


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _lagging(at_equal_epochs: Sequence[Finding]) -> str:
    """The end of a "nothing to fix" sentence: the first rung finding, if any, as what to look at."""
    if not at_equal_epochs:
        return "."
    return f"; but {at_equal_epochs[0].text}: compare their settings with the others'."


def _epochs_text(last: int) -> str:
    return " (all in epoch 1)" if last == 1 else f" (all within {last} epochs)"


def _when(finished: pd.DataFrame, is_cause: list[bool]) -> str:
    """ " (all in epoch 1)" or " (within N epochs)" for the cause's trials, when the table says."""
    if "epochs_run" not in finished.columns:
        return ""
    ran = [e for e, c in zip(finished["epochs_run"].tolist(), is_cause, strict=True) if c]
    if not ran or any(is_missing(e) for e in ran):
        return ""
    return _epochs_text(int(max(ran)))


def _conditions(
    name: str, definition: Mapping[str, Any], values: list[Any]
) -> list[tuple[str, str, list[bool], tuple[str, Any]]]:
    """(condition in words, action on the space, which trials meet it, the change) per side or choice."""
    present = [v for v in values if not is_missing(v)]
    numeric = definition.get("type") in ("float", "int") or (
        not definition
        and present
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)
    )
    words = name.removeprefix("model.").replace("_", " ")
    out: list[tuple[str, str, list[bool], tuple[str, Any]]] = []
    if not numeric:
        for choice in sorted({str(v) for v in present}):
            members = [not is_missing(v) and str(v) == choice for v in values]
            value = next(v for v in present if str(v) == choice)
            action = f"drop {choice} from {name}'s choices"
            out.append((f"{words} {choice}", action, members, ("drop", value)))
        return out
    distinct = sorted({float(v) for v in present})
    for low, high in itertools.pairwise(distinct):
        cut = round_between(low, high, log=bool(definition.get("log")))
        below = [not is_missing(v) and float(v) <= low for v in values]
        above = [not is_missing(v) and float(v) >= high for v in values]
        raise_low = f"raise the space's lower bound of {name} to {cut:g}"
        lower_high = f"lower the space's upper bound of {name} to {cut:g}"
        out.append((f"{words} < {cut:g}", raise_low, below, ("low", cut)))
        out.append((f"{words} > {cut:g}", lower_high, above, ("high", cut)))
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
