"""Rules that judge a trial against the study's other trials at equal epochs (``search.diagnosis.peers``).

Each rule reads :class:`search.diagnosis.curves.Curves` and returns a
:class:`search.diagnosis.labels.Finding` (clear or borderline) or None; without peers they find nothing.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from search.diagnosis.advice import higher_learning_rate
from search.diagnosis.curves import Curves
from search.diagnosis.data import BACKGROUND_MAX_DICE, NO_SIGNAL_MARGIN
from search.diagnosis.labels import Finding
from search.diagnosis.training import MIN_PEERS

# The other trials "learned" when their median val Dice at the same epoch is this far above the level
# this trial stayed at (chance, or BACKGROUND_MAX_DICE when the foreground share is unknown).
PEER_LEAD = 0.1


def behind_peers(c: Curves) -> Finding | None:
    """Val Dice at chance at every epoch while the other trials' median at the last one is well above it."""
    others = c.peers.dice_at(c.n)
    if len(others) < MIN_PEERS:
        return None
    chance = c.chance_dice
    level = chance + NO_SIGNAL_MARGIN if math.isfinite(chance) else BACKGROUND_MAX_DICE
    best = float(np.max(c.dice))
    median = float(statistics.median(others))
    if best > level or median < level + PEER_LEAD:
        return None
    floor = f"chance {chance:.3f}" if math.isfinite(chance) else f"{BACKGROUND_MAX_DICE:g}"
    seen = (
        f"val Dice {best:.3f} at best in {c.n} epoch(s), at {floor}, while the study's other "
        f"{len(others)} trials reached a median {median:.3f} by epoch {c.n}{c.lr_text}"
    )
    new_lr, why = higher_learning_rate(c)
    if new_lr is not None:
        changes: dict[str, float] = {"learning_rate": new_lr}
        advice = f"the data is learnable and this trial's settings are not; {why}: raise it to {new_lr:g}"
    else:
        changes = {}
        advice = "the data is learnable and this trial's settings are not; compare them with the learners'"
    evidence = {"peer_median_dice": median, "peers": len(others), "chance_level": level}
    return Finding("behind_peers", True, median / max(level, 1e-9), seen, advice, evidence, changes)
