"""The diagnosis vocabulary and the result type: a label, one line, the numbers and the suggested change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from search.outcome import DIAGNOSES as OUTCOME_DIAGNOSES
from search.outcome import HEALTHY, TOO_EARLY, UNCLEAR

# The labels come from the one outcome vocabulary (search.outcome.DIAGNOSIS_LABELS, with their phrases and
# meanings), in the order the causes are checked (the first clear one wins; see search.diagnosis.diagnose),
# then "too_early" (stopped before a cause could show), "healthy" (nothing wrong, with the epochs to tell)
# and "unclear" (the evidence does not decide between the two causes it names).
DIAGNOSES: tuple[str, ...] = tuple(OUTCOME_DIAGNOSES)
CAUSES: tuple[str, ...] = tuple(label for label in DIAGNOSES if label not in (TOO_EARLY, HEALTHY, UNCLEAR))
# Causes that only the study's other trials can show (search.diagnosis.peers); every other cause shows in
# one run alone, as the crafted runs of bench.diagnosis do.
CROSS_TRIAL_CAUSES: tuple[str, ...] = ("behind_peers",)


@dataclass(frozen=True)
class Diagnosis:
    """What went wrong (or not) in one trial, and what to change.

    ``changes`` is the advice as settings (``learning_rate``, ``model.norm``, ...) to apply to the
    trial's configuration for one follow-up run; empty when the fix is outside the configuration (e.g.
    "check that the masks match the images") or nothing is wrong. ``candidates`` names the two closest
    causes of an ``unclear`` diagnosis.
    """

    label: str  # one of DIAGNOSES
    summary: str  # one line: what was seen, the likely cause and the fix
    evidence: dict[str, float | int | str] = field(default_factory=dict)  # the numbers, JSON-safe
    changes: dict[str, Any] = field(default_factory=dict)  # suggested settings for a follow-up run
    candidates: tuple[str, ...] = ()  # for "unclear": the two closest causes

    def __post_init__(self) -> None:
        if self.label not in DIAGNOSES:
            raise ValueError(f"diagnosis label must be one of {', '.join(DIAGNOSES)} but got {self.label!r}")
        if (self.label == "unclear") != bool(self.candidates):
            raise ValueError("an 'unclear' diagnosis names its candidate causes, and only it does")


@dataclass(frozen=True)
class Finding:
    """One rule's verdict: a cause, whether its evidence is clear or only borderline, and the advice."""

    label: str
    clear: bool  # False: the numbers are near, not past, the rule's thresholds
    closeness: float  # how far past (> 1) or near (< 1) the deciding threshold; orders borderline ones
    seen: str  # what the curves showed, in words with the numbers
    advice: str  # the likely cause and the fix, in words
    evidence: Mapping[str, float | int | str] = field(default_factory=dict)
    changes: Mapping[str, Any] = field(default_factory=dict)

    def diagnosis(self, base: dict[str, float | int | str]) -> Diagnosis:
        return Diagnosis(
            self.label,
            f"{self.label}: {self.seen}: {self.advice}",
            base | dict(self.evidence),
            dict(self.changes),
        )
