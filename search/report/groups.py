"""Groups of trials by one parameter, and how well a group picks out an outcome label.

A parameter splits the trials into groups: each value of a categorical parameter or of a number with few
values, or both sides of a round threshold between every two neighbouring values of other numbers (in log
space for log-scaled parameters), so that a sentence about a group is true of every trial it counts. Each
group carries the change to the study file's space that leaves it out. :mod:`search.report.findings`
turns the groups that a label dominates into findings.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A group needs this many trials to say anything.
MIN_GROUP = 3
# The share of a group that must have the label...
MIN_SHARE = 0.75
# ...and by how much that share must exceed the label's share among the other trials.
MIN_CONTRAST = 0.5
# Numbers with at most this many distinct values are grouped by value, like categories.
MAX_VALUES_AS_GROUPS = 4

# (a parameter's value, the trial's outcome labels), one per trial.
Pairs = list[tuple[Any, frozenset[str]]]


@dataclass(frozen=True)
class Group:
    """Trials on one side of a threshold, or with one value, and the change to the space that leaves
    them out."""

    condition: str  # the group in words, e.g. "learning rate > 0.05"
    action: str  # the change in words, e.g. "narrow learning_rate to <= 0.05"
    members: tuple[int, ...]  # indexes into the pairs
    change: tuple[str, Any]  # ("high", 0.05), ("low", 1e-4) or ("drop", value)


def parameter_groups(name: str, definition: Mapping[str, Any], pairs: Pairs) -> tuple[list[Group], bool]:
    """The groups of one parameter, and whether they are thresholds (which overlap) rather than values."""
    distinct = sorted({v for v, _ in pairs}, key=sort_key)
    if by_threshold(definition, distinct):
        return threshold_groups(name, distinct, pairs, log=bool(definition.get("log"))), True
    groups = [
        Group(
            f"{words(name)} {value_text(v)}",
            f"drop {value_text(v)} from {name}'s choices",
            tuple(i for i, (x, _) in enumerate(pairs) if x == v),
            ("drop", v),
        )
        for v in distinct
    ]
    return groups, False


def by_threshold(definition: Mapping[str, Any], distinct: list[Any]) -> bool:
    """Whether a parameter with these distinct values is split by thresholds (else by value)."""
    numeric = definition.get("type") in ("float", "int") or (
        not definition and all(is_number(v) for v in distinct)
    )
    return numeric and len(distinct) > MAX_VALUES_AS_GROUPS


def threshold_groups(name: str, distinct: list[Any], pairs: Pairs, *, log: bool) -> list[Group]:
    """Both sides of a round threshold between every two neighbouring values."""
    groups = []
    for low, high in itertools.pairwise(distinct):
        cut = round_between(float(low), float(high), log=log)
        below = tuple(i for i, (v, _) in enumerate(pairs) if v <= low)
        above = tuple(i for i, (v, _) in enumerate(pairs) if v >= high)
        groups.append(Group(f"{words(name)} < {cut:g}", f"narrow {name} to >= {cut:g}", below, ("low", cut)))
        groups.append(Group(f"{words(name)} > {cut:g}", f"narrow {name} to <= {cut:g}", above, ("high", cut)))
    return groups


def score(label: str, members: tuple[int, ...], pairs: Pairs) -> tuple[float, float, int] | None:
    """How well ``members`` picks out ``label`` (F1, share, count), or None when it is no finding.

    A group of every trial explains nothing (there is no outside to be rarer in).
    """
    if len(members) < MIN_GROUP or len(members) == len(pairs):
        return None
    matched = sum(label in pairs[i][1] for i in members)
    share = matched / len(members)
    if share < MIN_SHARE or share - outside_share(label, members, pairs) < MIN_CONTRAST:
        return None
    total = sum(label in ls for _, ls in pairs)
    return (2 * matched / (len(members) + total), share, matched)


def outside_share(label: str, members: tuple[int, ...], pairs: Pairs) -> float:
    """The share of the trials outside ``members`` that have ``label``."""
    inside = set(members)
    outside = [ls for i, (_, ls) in enumerate(pairs) if i not in inside]
    return sum(label in ls for ls in outside) / len(outside) if outside else 0.0


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


def words(name: str) -> str:
    """A parameter name as words: ``model.norm`` -> "normalisation", ``learning_rate`` -> "learning rate"."""
    short = name.removeprefix("model.")
    return {"norm": "normalisation"}.get(short, short.replace("_", " "))


def value_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if is_number(value) else (1, str(value))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
