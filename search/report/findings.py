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

A failure that one parameter's range explains only for some values of another is found on the two
together (:func:`joint_findings`), when that picks it out better than any one parameter does:

    all 12 trials with optimizer adam or adamw and learning rate > 0.0097 diverged in epoch 1 (none of the
    11 with optimizer sgd there did): narrow learning_rate to <= 0.0097 for optimizer adam or adamw

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from search.outcome import DIAGNOSES, HEALTHY, RETRYABLE_REASONS, STOP_REASONS, TOO_EARLY, UNCLEAR
from search.report.groups import (
    MAX_VALUES_AS_GROUPS,
    Group,
    Pairs,
    by_threshold,
    outside_share,
    parameter_groups,
    score,
    sort_key,
    threshold_groups,
    value_text,
    words,
)
from search.report.markdown import is_missing

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
    # The change to the study file's space the action names: ("high", 0.1) or ("low", 1e-4) for a range,
    # ("drop", value) for a choice; None for a finding without one.
    change: tuple[str, Any] | None = None
    # A joint finding (:func:`joint_findings`): the other parameter whose values the group is limited to,
    # e.g. "optimizer" and ("adam", "adamw"), and how the trials with its other values fared in the same
    # range, e.g. "none of the 4 with optimizer sgd there did".
    given: str = ""
    given_values: tuple[Any, ...] = ()
    contrast: str = ""

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
        contrast = f" ({self.contrast})" if self.contrast else ""
        return f"{count} trials with {self.condition} {phrase}{when}{contrast}"

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
    epochs_all: list[int | None] = [None if is_missing(e) else int(e) for e in epochs_run]  # type: ignore[arg-type]
    found: list[tuple[int, Finding]] = []
    single_best: dict[str, float] = {}
    for order, (name, definition) in enumerate(space.items()):
        if name in eligible.columns:
            kept = [
                (v, ls, e)
                for v, ls, e in zip(eligible[name].tolist(), labels, epochs_all, strict=True)
                if not is_missing(v)
            ]
            pairs = [(v, ls) for v, ls, _ in kept]
            found += [(order, f) for f in _param_findings(name, definition, pairs, [e for _, _, e in kept])]
            for label, best in _best_scores(name, definition, pairs).items():
                single_best[label] = max(single_best.get(label, 0.0), best)
    columns = {name: eligible[name].tolist() for name in space if name in eligible.columns}
    joint = joint_findings(columns, labels, epochs_all, space, single_best=single_best)
    found += [(list(space).index(f.param), f) for f in joint]
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


def _param_findings(
    name: str, definition: Mapping[str, Any], pairs: Pairs, epochs: list[int | None]
) -> list[Finding]:
    """The findings about one parameter: per value, or the best threshold per label."""
    groups, thresholds = parameter_groups(name, definition, pairs)
    chosen: list[tuple[str, Group]] = []
    for label in sorted({label for _, ls in pairs for label in ls}, key=_label_key):
        scored = [(s, group) for group in groups if (s := score(label, group.members, pairs)) is not None]
        if thresholds and scored:
            # Thresholds overlap: keep the one split that best separates the label.
            chosen.append((label, max(scored, key=lambda item: item[0])[1]))
        else:
            chosen += [(label, group) for _, group in scored]
    return _merge(name, chosen, pairs, epochs)


def _best_scores(name: str, definition: Mapping[str, Any], pairs: Pairs) -> dict[str, float]:
    """Per label, the best F1 of a group of this parameter that is a finding."""
    groups, _ = parameter_groups(name, definition, pairs)
    best: dict[str, float] = {}
    for label in {label for _, ls in pairs for label in ls}:
        scores = [s[0] for group in groups if (s := score(label, group.members, pairs)) is not None]
        if scores:
            best[label] = max(scores)
    return best


def _merge(
    name: str, chosen: list[tuple[str, Group]], pairs: Pairs, epochs: list[int | None]
) -> list[Finding]:
    """One finding per group and set of matched trials, naming every label they share."""
    merged: dict[tuple[str, tuple[int, ...]], tuple[Group, list[str]]] = {}
    for label, group in chosen:
        matched = tuple(i for i in group.members if label in pairs[i][1])
        merged.setdefault((group.condition, matched), (group, []))[1].append(label)
    for _, labels in merged.values():
        if len(labels) > 1 and _GENERAL_LABEL in labels:
            labels.remove(_GENERAL_LABEL)
    findings = []
    for (_, matched), (group, labels) in merged.items():
        failure = bool(_FAILURES.intersection(labels))
        findings.append(
            Finding(
                param=name,
                condition=group.condition,
                labels=tuple(labels),
                matched=len(matched),
                size=len(group.members),
                outside_share=outside_share(labels[0], group.members, pairs),
                action=group.action if failure else "",
                last_epoch=_last_epoch([epochs[i] for i in matched]),
                change=group.change if failure else None,
            )
        )
    return findings


def _last_epoch(ran: list[int | None]) -> int | None:
    return max(e for e in ran if e is not None) if ran and None not in ran else None


def joint_findings(
    columns: Mapping[str, list[Any]],
    labels: list[frozenset[str]],
    epochs: list[int | None],
    space: Mapping[str, Mapping[str, Any]],
    *,
    single_best: Mapping[str, float],
) -> list[Finding]:
    """Failures that one parameter's range explains only for some values of another parameter.

    Adam diverges at learning rates where SGD trains: "learning rate > 0.02" alone is no finding (the SGD
    trials there did not diverge), "optimizer adam" alone neither (its low learning rates trained), but
    "optimizer adam or adamw and learning rate > 0.02" picks out the diverged trials. For every failure
    label, every threshold of a number split by thresholds is tried within every proper subset of the
    values of a parameter grouped by value; the best such group (by F1 with the label) becomes a finding
    when it meets the same bars as a one-parameter group and picks the label out better (a higher F1)
    than any one-parameter group does (``single_best``).

    Args:
        columns: each parameter's values, one per trial (None or NaN: missing).
        labels: each trial's outcome labels.
        epochs: each trial's epochs run (None: unknown).
        space: the study's searched parameters as stored in its spec.
        single_best: per label, the best F1 of any one-parameter group that is a finding (0 if none).
    """
    present = {name: [not is_missing(v) for v in values] for name, values in columns.items() if name in space}
    found = []
    for label in sorted({label for ls in labels for label in ls} & _FAILURES, key=_label_key):
        best: tuple[tuple[float, float, int, int], Finding] | None = None
        for given, ranged in itertools.permutations(present, 2):
            candidate = _best_joint(label, given, ranged, columns, labels, epochs, space, present)
            if candidate is not None and (best is None or candidate[0] > best[0]):
                best = candidate
        if best is not None and best[0][0] > single_best.get(label, 0.0):
            found.append(best[1])
    return found


def _best_joint(
    label: str,
    given: str,
    ranged: str,
    columns: Mapping[str, list[Any]],
    labels: list[frozenset[str]],
    epochs: list[int | None],
    space: Mapping[str, Mapping[str, Any]],
    present: Mapping[str, list[bool]],
) -> tuple[tuple[float, float, int, int], Finding] | None:
    """The best group "``given`` in some values and ``ranged`` beyond a threshold" for ``label``."""
    rows = [i for i in range(len(labels)) if present[given][i] and present[ranged][i]]
    given_values = [columns[given][i] for i in rows]
    choices = sorted(set(given_values), key=sort_key)
    ranged_values = [columns[ranged][i] for i in rows]
    distinct = sorted(set(ranged_values), key=sort_key)
    if by_threshold(space[given], choices) or not by_threshold(space[ranged], distinct) or len(choices) < 2:
        return None
    pairs: Pairs = [(v, labels[i]) for v, i in zip(ranged_values, rows, strict=True)]
    groups = threshold_groups(ranged, distinct, pairs, log=bool(space[ranged].get("log")))
    best: tuple[tuple[float, float, int, int], Group, tuple[Any, ...]] | None = None
    for size in range(1, min(len(choices), MAX_VALUES_AS_GROUPS + 1)):
        for subset in itertools.combinations(choices, size):
            inside = {k for k, v in enumerate(given_values) if v in subset}
            for group in groups:
                members = tuple(k for k in group.members if k in inside)
                s = score(label, members, pairs)
                # Of equal scores, the fewest values: only they showed it.
                if s is not None and (best is None or (*s, -size) > best[0]):
                    best = ((*s, -size), dataclasses.replace(group, members=members), subset)
    if best is None:
        return None
    key, group, subset = best
    rest = [v for v in choices if v not in subset]
    others = [k for k, v in enumerate(given_values) if v in rest and _same_side(group, pairs[k][0])]
    failed = sum(label in pairs[k][1] for k in others)
    if not others:
        return None  # the group is the whole range: the one-parameter finding says it
    matched = tuple(k for k in group.members if label in pairs[k][1])
    given_text = f"{words(given)} {' or '.join(value_text(v) for v in subset)}"
    rest_text = f"{words(given)} {' or '.join(value_text(v) for v in rest)}"
    finding = Finding(
        param=ranged,
        condition=f"{given_text} and {group.condition}",
        labels=(label,),
        matched=len(matched),
        size=len(group.members),
        outside_share=outside_share(label, group.members, pairs),
        action=f"{group.action} for {given_text}",
        last_epoch=_last_epoch([epochs[rows[k]] for k in matched]),
        change=group.change,
        given=given,
        given_values=subset,
        contrast=f"{'none' if failed == 0 else failed} of the {len(others)} with {rest_text} there did",
    )
    return key, finding


def _same_side(group: Group, value: Any) -> bool:
    side, cut = group.change
    return bool(value > cut) if side == "high" else bool(value < cut)


def _label_key(label: str) -> tuple[int, str]:
    order = list(LABEL_PHRASES)
    return (order.index(label) if label in order else len(order), label)
