"""Findings in plain words: which parameter values go with which stop reasons and diagnoses.

Each finished trial has outcome labels: its stop reason (plateau, diverged, underperforming,
out_of_memory, error), its diagnosis (a cause of ``search.diagnosis.CAUSES``: diverged, input_scale,
vanishing_gradients, stalled, no_signal, background_only, constant_floor, foreground_flood, unstable,
overfitting, underfitting, behind_peers), and "pruned" when it was stopped early for any reason (several
reasons together can mark a bad range that no single reason does); "healthy", "too_early", "unclear" and a
completed trial's lack of a stop reason are not labels. For every
searched parameter the trials are split into groups (each value of a categorical parameter or of a
number with few values; above or below a threshold for other numbers), and a group becomes a finding
when a label dominates it and is clearly rarer outside it:

    all 6 trials with learning rate > 0.05 diverged in epoch 1: narrow learning_rate to <= 0.05
    4 of 5 trials with normalisation none stalled: drop none from model.norm's choices

Pruned trials count as much as finished ones: under successive halving most trials end at the first
rung, and a failure there (a loss that exploded in epoch 1) is what the search most needs to avoid. When
the trials table has ``epochs_run``, a finding says by which epoch its trials ended; a finding about a
failure says how to change the space (:attr:`Finding.action`).

Without any label, the trials can still be compared at equal epochs (:func:`rung_findings`): at the
deepest epoch that ``MIN_RUNG_TRIALS`` of them reached (under successive halving, a rung), the ones whose
val Dice is in the bottom quarter are grouped the same way:

    all 5 trials with learning rate < 0.0003 were in the bottom quarter of val Dice at epoch 1 (<= 0.12 of
    16 trials)

Trials whose worker was lost or that were interrupted say nothing about their parameters and are left
out. Thresholds are round numbers between the observed values (in log space for log-scaled parameters),
so that the sentence is true of every trial it counts.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from search.outcome import DIAGNOSES, HEALTHY, RETRYABLE_REASONS, STOP_REASONS, TOO_EARLY, UNCLEAR
from search.report.markdown import is_missing

# A group needs this many trials to say anything.
MIN_GROUP = 3
# The share of a group that must have the label...
MIN_SHARE = 0.75
# ...and by how much that share must exceed the label's share among the other trials.
MIN_CONTRAST = 0.5
# Numbers with at most this many distinct values are grouped by value, like categories.
MAX_VALUES_AS_GROUPS = 4
# Rung findings compare val Dice at the deepest epoch at least this many trials reached (a quarter of
# them is then 2 or more); ties that put more than half of them at or below the quarter say nothing.
MIN_RUNG_TRIALS = 8
BOTTOM_QUARTER = 0.25
BOTTOM_LABEL = "bottom_quarter"  # the rung findings' label: not an outcome, no action

# Says less than any other label: dropped from a finding that names another one for the same trials.
_GENERAL_LABEL = "pruned"
# How each label reads after "N trials with ...", in the order findings about one group list them:
# diagnoses, then stop reasons (search.outcome), then the general label.
LABEL_PHRASES: dict[str, str] = {**DIAGNOSES, **STOP_REASONS, _GENERAL_LABEL: "were stopped early"}
_NOT_LABELS = {HEALTHY, TOO_EARLY, UNCLEAR, *RETRYABLE_REASONS}
# Labels that name a failure of the settings: a group that has one gets the change to the space that
# avoids it. Not "underperforming" or "pruned": under successive halving most trials end so, and leaving
# out the range of the pruned ones may leave the range that diverged.
_FAILURES = {*DIAGNOSES, "diverged", "out_of_memory", "error"} - _NOT_LABELS
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
    action: str = ""  # the change to the space that avoids the group, e.g. "narrow learning_rate to <= 0.1"
    last_epoch: int | None = None  # the most epochs any matched trial ran (None: not known)
    phrase: str = ""  # how the labels read, when not LABEL_PHRASES' words (rung findings)

    @property
    def text(self) -> str:
        """The finding without its action, as a sentence without a final full stop."""
        phrase = self.phrase or " and ".join(
            LABEL_PHRASES.get(label, f"ended as {label}") for label in self.labels
        )
        count = f"all {self.size}" if self.matched == self.size else f"{self.matched} of {self.size}"
        when = ""
        if self.last_epoch is not None:
            when = " in epoch 1" if self.last_epoch == 1 else f" within {self.last_epoch} epochs"
        return f"{count} trials with {self.condition} {phrase}{when}"

    @property
    def at_equal_epochs(self) -> bool:
        """A rung finding (:func:`rung_findings`): val Dice compared at one epoch, no outcome label."""
        return BOTTOM_LABEL in self.labels

    @property
    def sentence(self) -> str:
        """The finding and, for a failure, the change to the space, without a final full stop."""
        return f"{self.text}: {self.action}" if self.action else self.text


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
        Findings about failures (with an action) first, each group sorted by matched trials
        (descending), then share, then the space's order.
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
    epochs_run = eligible["epochs_run"].tolist() if "epochs_run" in eligible.columns else [None] * len(labels)
    found: list[tuple[int, Finding]] = []
    for order, (name, definition) in enumerate(space.items()):
        if name in eligible.columns:
            kept = [
                (v, ls, e)
                for v, ls, e in zip(eligible[name].tolist(), labels, epochs_run, strict=True)
                if not is_missing(v)
            ]
            pairs = [(v, ls) for v, ls, _ in kept]
            epochs = [None if is_missing(e) else int(e) for _, _, e in kept]
            found += [(order, finding) for finding in _param_findings(name, definition, pairs, epochs)]
    found.sort(
        key=lambda item: (
            not item[1].action,
            -item[1].matched,
            -item[1].matched / item[1].size,
            item[0],
            item[1].condition,
        )
    )
    return [finding for _, finding in found]


def rung_findings(
    trials: pd.DataFrame, epochs: pd.DataFrame, space: Mapping[str, Mapping[str, Any]]
) -> list[Finding]:
    """Parameter groups whose trials were all (or 75 %+) in the bottom quarter of val Dice at one epoch.

    The epoch is the deepest that ``MIN_RUNG_TRIALS`` finished trials reached, so that pruned trials are
    compared with the others at equal training. A NaN val Dice counts as 0 (no overlap).

    Args:
        trials: as for :func:`find_findings`, with the trials' ``number``.
        epochs: the study's epoch rows with ``trial_number``, ``epoch`` and ``val_dice``
            (``search.report.tables.epochs_frame``).
        space: as for :func:`find_findings`.

    Returns:
        The findings, most trials first; none when too few trials reached any epoch.
    """
    eligible = trials[trials["state"].isin(_FINISHED_STATES) & ~trials["stop_reason"].isin(RETRYABLE_REASONS)]
    rows = epochs[epochs["trial_number"].isin(eligible["number"])]
    reached = rows.groupby("epoch")["trial_number"].nunique()
    deep = [int(e) for e, n in reached.items() if n >= MIN_RUNG_TRIALS]
    if not deep:
        return []
    rung = max(deep)
    at = rows[rows["epoch"] == rung].groupby("trial_number")["val_dice"].last().astype(float).fillna(0.0)
    cut = float(at.quantile(BOTTOM_QUARTER))
    bottom = {int(n) for n, v in at.items() if v <= cut}
    if len(bottom) > len(at) / 2:
        return []
    compared = eligible[eligible["number"].isin(at.index)]
    labels = [frozenset({BOTTOM_LABEL}) if int(n) in bottom else frozenset() for n in compared["number"]]
    highest = max(float(at[n]) for n in bottom)
    phrase = f"were in the bottom quarter of val Dice at epoch {rung} (<= {highest:.3g} of {len(at)} trials)"
    found: list[tuple[int, Finding]] = []
    for order, (name, definition) in enumerate(space.items()):
        if name not in compared.columns:
            continue
        pairs = [(v, ls) for v, ls in zip(compared[name].tolist(), labels, strict=True) if not is_missing(v)]
        for finding in _param_findings(name, definition, pairs, [None] * len(pairs)):
            found.append((order, dataclasses.replace(finding, phrase=phrase)))
    found.sort(key=lambda item: (-item[1].matched, -item[1].matched / item[1].size, item[0]))
    return [finding for _, finding in found]


_Pairs = list[tuple[Any, frozenset[str]]]


def _param_findings(
    name: str, definition: Mapping[str, Any], pairs: _Pairs, epochs: list[int | None]
) -> list[Finding]:
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
            (
                f"{_words(name)} {_value_text(v)}",
                f"drop {_value_text(v)} from {name}'s choices",
                [i for i, (x, _) in enumerate(pairs) if x == v],
            )
            for v in distinct
        ]
    chosen: list[tuple[str, str, str, list[int]]] = []
    for label in sorted({label for _, ls in pairs for label in ls}, key=_label_key):
        scored = [
            (score, condition, action, members)
            for condition, action, members in groups
            if (score := _score(label, members, pairs)) is not None
        ]
        if by_threshold and scored:
            # Thresholds overlap: keep the one split that best separates the label.
            _, condition, action, members = max(scored, key=lambda item: item[0])
            chosen.append((label, condition, action, members))
        else:
            chosen += [(label, condition, action, members) for _, condition, action, members in scored]
    return _merge(name, chosen, pairs, epochs)


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


def _merge(
    name: str, chosen: list[tuple[str, str, str, list[int]]], pairs: _Pairs, epochs: list[int | None]
) -> list[Finding]:
    """One finding per group and set of matched trials, naming every label they share."""
    merged: dict[tuple[str, tuple[int, ...]], tuple[str, list[int], list[str]]] = {}
    for label, condition, action, members in chosen:
        matched = tuple(i for i in members if label in pairs[i][1])
        merged.setdefault((condition, matched), (action, members, []))[2].append(label)
    for _, _, labels in merged.values():
        if len(labels) > 1 and _GENERAL_LABEL in labels:
            labels.remove(_GENERAL_LABEL)
    findings = []
    for (condition, matched), (action, members, labels) in merged.items():
        ran = [epochs[i] for i in matched]
        last = max(e for e in ran if e is not None) if ran and None not in ran else None
        findings.append(
            Finding(
                param=name,
                condition=condition,
                labels=tuple(labels),
                matched=len(matched),
                size=len(members),
                outside_share=_outside_share(labels[0], members, pairs),
                action=action if _FAILURES.intersection(labels) else "",
                last_epoch=last,
            )
        )
    return findings


def _threshold_groups(
    name: str, distinct: list[Any], pairs: _Pairs, *, log: bool
) -> list[tuple[str, str, list[int]]]:
    """Both sides of a round threshold between every two neighbouring values, with the change to the
    space that leaves each side out."""
    groups = []
    for low, high in itertools.pairwise(distinct):
        cut = round_between(float(low), float(high), log=log)
        below = [i for i, (v, _) in enumerate(pairs) if v <= low]
        above = [i for i, (v, _) in enumerate(pairs) if v >= high]
        groups.append((f"{_words(name)} < {cut:g}", f"narrow {name} to >= {cut:g}", below))
        groups.append((f"{_words(name)} > {cut:g}", f"narrow {name} to <= {cut:g}", above))
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
