"""Findings in plain words: which parameter values go with which stop reasons and diagnoses.

Each finished trial has outcome labels: its stop reason (plateau, diverged, underperforming,
out_of_memory, error), its diagnosis (a cause of ``search.diagnosis.CAUSES``: diverged, input_scale,
vanishing_gradients, stalled, no_signal, background_only, foreground_flood, unstable, overfitting,
underfitting), and "pruned" when it was stopped early for any reason (several reasons together can mark a
bad range that no single reason does); "healthy", "unclear" and a completed trial's lack of a stop reason
are not labels. For every
searched parameter the trials are split into groups (each value of a categorical parameter or of a
number with few values; above or below a threshold for other numbers), and a group becomes a finding
when a label dominates it and is clearly rarer outside it:

    all 6 trials with learning rate > 0.05 diverged
    4 of 5 trials with normalisation none stalled

Trials whose worker was lost or that were interrupted say nothing about their parameters and are left
out. Thresholds are round numbers between the observed values (in log space for log-scaled parameters),
so that the sentence is true of every trial it counts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from search.outcome import DIAGNOSES, HEALTHY, RETRYABLE_REASONS, STOP_REASONS, UNCLEAR
from search.report.markdown import is_missing

# A group needs this many trials to say anything.
MIN_GROUP = 3
# The share of a group that must have the label...
MIN_SHARE = 0.75
# ...and by how much that share must exceed the label's share among the other trials.
MIN_CONTRAST = 0.5
# Numbers with at most this many distinct values are grouped by value, like categories.
MAX_VALUES_AS_GROUPS = 4

# Says less than any other label: dropped from a finding that names another one for the same trials.
_GENERAL_LABEL = "pruned"
# How each label reads after "N trials with ...", in the order findings about one group list them:
# diagnoses, then stop reasons (search.outcome), then the general label.
LABEL_PHRASES: dict[str, str] = {**DIAGNOSES, **STOP_REASONS, _GENERAL_LABEL: "were stopped early"}
_NOT_LABELS = {HEALTHY, UNCLEAR, *RETRYABLE_REASONS}
_FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")


@dataclass(frozen=True)
class Finding:
    """One group of trials in which some outcome labels dominate."""

    param: str  # the parameter's name, e.g. "learning_rate"
    condition: str  # the group in words, e.g. "learning rate > 0.05"
    labels: tuple[str, ...]  # the labels shared by the matched trials, e.g. ("diverged",)
    matched: int  # trials of the group that have the labels
    size: int  # trials in the group
    outside_share: float  # share of the other trials that have the first label

    @property
    def text(self) -> str:
        """The finding as a sentence without a final full stop."""
        phrase = " and ".join(LABEL_PHRASES.get(label, f"ended as {label}") for label in self.labels)
        count = f"all {self.size}" if self.matched == self.size else f"{self.matched} of {self.size}"
        return f"{count} trials with {self.condition} {phrase}"


def outcome_labels(stop_reason: Any, diagnosis: Any, *, state: str | None = None) -> frozenset[str]:
    """The labels of a trial with this stop reason, diagnosis and state name (each may be missing)."""
    labels = {value for value in (stop_reason, diagnosis) if isinstance(value, str) and value}
    if state == "PRUNED":
        labels.add(_GENERAL_LABEL)
    return frozenset(labels - _NOT_LABELS)


def find_findings(trials: pd.DataFrame, space: Mapping[str, Mapping[str, Any]]) -> list[Finding]:
    """The findings of one study, most trials first.

    Args:
        trials: one row per trial with columns ``state``, ``stop_reason``, ``diagnosis`` and one column
            per parameter named in ``space`` (``search.report.tables.trials_frame`` of one study).
        space: the study's searched parameters as stored in its spec (``{"type": "float", "log":
            true, ...}``); a parameter without a definition is judged by its values.

    Returns:
        Findings sorted by matched trials (descending), then share, then the space's order.
    """
    eligible = trials[trials["state"].isin(_FINISHED_STATES) & ~trials["stop_reason"].isin(RETRYABLE_REASONS)]
    labels = [
        outcome_labels(reason, diagnosis, state=state)
        for reason, diagnosis, state in zip(
            eligible["stop_reason"].tolist(),
            eligible["diagnosis"].tolist(),
            eligible["state"].tolist(),
            strict=True,
        )
    ]
    found: list[tuple[int, Finding]] = []
    for order, (name, definition) in enumerate(space.items()):
        if name in eligible.columns:
            pairs = [
                (v, ls) for v, ls in zip(eligible[name].tolist(), labels, strict=True) if not is_missing(v)
            ]
            found += [(order, finding) for finding in _param_findings(name, definition, pairs)]
    found.sort(
        key=lambda item: (-item[1].matched, -item[1].matched / item[1].size, item[0], item[1].condition)
    )
    return [finding for _, finding in found]


_Pairs = list[tuple[Any, frozenset[str]]]


def _param_findings(name: str, definition: Mapping[str, Any], pairs: _Pairs) -> list[Finding]:
    """The findings about one parameter: per value, or the best threshold per label."""
    distinct = sorted({v for v, _ in pairs}, key=_sort_key)
    numeric = definition.get("type") in ("float", "int") or (
        not definition and all(_is_number(v) for v in distinct)
    )
    by_threshold = numeric and len(distinct) > MAX_VALUES_AS_GROUPS
    if by_threshold:
        groups = _threshold_groups(name, distinct, pairs, log=bool(definition.get("log")))
    else:
        groups = [
            (f"{_words(name)} {_value_text(v)}", [i for i, (x, _) in enumerate(pairs) if x == v])
            for v in distinct
        ]
    chosen: list[tuple[str, str, list[int]]] = []
    for label in sorted({label for _, ls in pairs for label in ls}, key=_label_key):
        scored = [
            (score, condition, members)
            for condition, members in groups
            if (score := _score(label, members, pairs)) is not None
        ]
        if by_threshold and scored:
            # Thresholds overlap: keep the one split that best separates the label.
            _, condition, members = max(scored, key=lambda item: item[0])
            chosen.append((label, condition, members))
        else:
            chosen += [(label, condition, members) for _, condition, members in scored]
    return _merge(name, chosen, pairs)


def _score(label: str, members: list[int], pairs: _Pairs) -> tuple[float, float, int] | None:
    """How well ``members`` picks out ``label`` (F1, share, count), or None when it is no finding."""
    if len(members) < MIN_GROUP:
        return None
    matched = sum(label in pairs[i][1] for i in members)
    share = matched / len(members)
    if share < MIN_SHARE or share - _outside_share(label, members, pairs) < MIN_CONTRAST:
        return None
    total = sum(label in ls for _, ls in pairs)
    return (2 * matched / (len(members) + total), share, matched)


def _outside_share(label: str, members: list[int], pairs: _Pairs) -> float:
    inside = set(members)
    outside = [ls for i, (_, ls) in enumerate(pairs) if i not in inside]
    return sum(label in ls for ls in outside) / len(outside) if outside else 0.0


def _merge(name: str, chosen: list[tuple[str, str, list[int]]], pairs: _Pairs) -> list[Finding]:
    """One finding per group and set of matched trials, naming every label they share."""
    merged: dict[tuple[str, tuple[int, ...]], tuple[list[int], list[str]]] = {}
    for label, condition, members in chosen:
        matched = tuple(i for i in members if label in pairs[i][1])
        merged.setdefault((condition, matched), (members, []))[1].append(label)
    for _, labels in merged.values():
        if len(labels) > 1 and _GENERAL_LABEL in labels:
            labels.remove(_GENERAL_LABEL)
    return [
        Finding(
            param=name,
            condition=condition,
            labels=tuple(labels),
            matched=len(matched),
            size=len(members),
            outside_share=_outside_share(labels[0], members, pairs),
        )
        for (condition, matched), (members, labels) in merged.items()
    ]


def _threshold_groups(
    name: str, distinct: list[Any], pairs: _Pairs, *, log: bool
) -> list[tuple[str, list[int]]]:
    """Both sides of a round threshold between every two neighbouring values."""
    groups = []
    for low, high in itertools.pairwise(distinct):
        cut = round_between(float(low), float(high), log=log)
        groups.append((f"{_words(name)} < {cut:g}", [i for i, (v, _) in enumerate(pairs) if v <= low]))
        groups.append((f"{_words(name)} > {cut:g}", [i for i, (v, _) in enumerate(pairs) if v >= high]))
    return groups


def round_between(low: float, high: float, *, log: bool = False) -> float:
    """The number with the fewest significant digits strictly between ``low`` and ``high``.

    Candidates are the middle (the geometric middle when ``log`` and both are positive) and both ends,
    each rounded to 1, 2, ... significant digits; the middle itself when none fits.
    """
    middle = math.sqrt(low * high) if log and low > 0 else (low + high) / 2
    for digits in range(1, 16):
        for candidate in (middle, high, low):
            rounded = float(f"{candidate:.{digits}g}")
            if low < rounded < high:
                return rounded
    return middle


def _words(name: str) -> str:
    """A parameter name as words: ``model.norm`` -> "normalisation", ``learning_rate`` -> "learning rate"."""
    short = name.removeprefix("model.")
    return {"norm": "normalisation"}.get(short, short.replace("_", " "))


def _value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _label_key(label: str) -> tuple[int, str]:
    order = list(LABEL_PHRASES)
    return (order.index(label) if label in order else len(order), label)


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if _is_number(value) else (1, str(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
