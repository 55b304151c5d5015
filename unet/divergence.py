"""When a loss has diverged: one rule, used by ``fit``'s guard and by the search's pruning and diagnosis.

A loss has diverged when it is NaN/inf, or when it is more than a factor times a reference loss taken
early in training (only a positive reference gives a meaningful ratio). Two factors, because the two
references differ:

- :data:`DIVERGENCE_FACTOR` (5) is the search's: relative to a trial's val loss of epoch 1
  (``search.pruning`` stops the trial, ``search.diagnosis`` labels it). The first epoch's val loss is
  usually the highest of a healthy curve; genuine blow-ups go up by orders of magnitude. Overfitting or
  BatchNorm noise can raise a val loss 2-3x above a low first value (imbalanced BCE starts low), and
  calling that "diverged" would mislead the diagnosis, while the plateau rule stops such a curve within
  its patience anyway. So the factor errs high: 5 is clearly beyond noise and still well below a real
  blow-up.
- :data:`GUARD_FACTOR` (100) is ``fit``'s last-resort guard (``TrainConfig.divergence_factor``), relative
  to the loss of the very first training step: it ends a run that is beyond saving even when no search
  watches it, and must never end one that still learns.
"""

from __future__ import annotations

import math

DIVERGENCE_FACTOR = 5.0
GUARD_FACTOR = 100.0


def exceeds(value: float, reference: float | None, factor: float) -> bool:
    """Whether ``value`` has diverged from ``reference``: not finite, or over ``factor`` times it.

    Args:
        value: the loss now.
        reference: the early loss it is compared with; None or <= 0 means only NaN/inf count.
        factor: how many times the reference counts as diverged (> 1).
    """
    if not math.isfinite(value):
        return True
    return reference is not None and reference > 0 and value > factor * reference
