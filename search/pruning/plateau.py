"""The per-trial rule: stop a trial on its own val-loss curve (diverged at once, plateau after warm-up).

The loss function is itself a searched hyperparameter, so loss values of different trials are not
comparable: plateaus and divergence are judged on each trial's OWN validation loss curve. The decision
depends only on the curve, never on timing or process state, so the local and the Ray backend agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search.outcome import StopDecision, json_number
from search.pruning.validation import check_int, is_real
from unet.divergence import DIVERGENCE_FACTOR, exceeds
from unet.errors import ConfigError


@dataclass(frozen=True)
class PlateauRule:
    """Stops one trial on its own validation-loss curve: divergence at once, plateaus after warm-up.

    The rule, judged at epoch ``n`` on the losses of epochs ``1..n``:

    1. diverged: the val loss of epoch ``n`` is NaN or +-inf, at any epoch, warm-up included; or it is
       more than ``divergence_factor`` times the val loss of epoch 1 (only when that is > 0, since a
       ratio to a zero or negative loss means nothing).
    2. plateau, only when ``n > warmup_epochs`` and ``n > patience`` (one epoch before the window is
       needed): the window is the last ``patience`` epochs. With ``best_before`` the lowest loss before
       the window and ``best_window`` the lowest loss in it, the improvement is
       ``(best_before - best_window) / |best_before|``. If it is >= ``min_delta`` (and > 0, so that a
       flat curve stops even with ``min_delta=0``), the curve lives on.
       Because the improvement is measured over the whole window, a curve falling steadily by ``r`` per
       epoch survives whenever ``1 - (1 - r) ** patience >= min_delta``: 0.5 %/epoch with patience 3
       gives 1.5 % >= 1 %.
    3. trend veto: a noisy but improving curve can miss a new best for ``patience`` epochs because one
       earlier epoch was luckily low. So before calling a plateau, a least-squares line is fitted to
       the last ``2 * patience`` post-warm-up epochs (at least 3); if that line falls by at least
       ``min_delta`` (and > 0; relative to the mean of those losses) over ``patience`` epochs, the curve
       is still improving and lives on. Warm-up epochs are left out of the fit because their fast early fall
       says nothing about the trend now. A flat, or noisy flat, curve has a slope near zero and is
       stopped.

    ``check`` returns the FIRST epoch at which this rule stops the curve, so a whole curve gives the same
    decision as feeding it epoch by epoch.
    """

    # These defaults are the study file's (search.spec.schema takes them from here). Warm-up 1 and
    # patience 2 (tuned on BENCHMARKS.md's search-efficiency replay): a flat or dead curve stops at epoch
    # 3, not 4 or 5, the largest single gain in compute to target. The best Dice reached is unchanged, but
    # more top trials are stopped after their peak and so end PRUNED, not COMPLETE.
    warmup_epochs: int = 1  # no plateau decision at epochs 1..warmup_epochs (divergence is still caught)
    patience: int = 2  # epochs without enough improvement before a plateau is called
    min_delta: float = 0.01  # relative improvement over the patience window that counts (0.01 = 1 %)
    divergence_factor: float = DIVERGENCE_FACTOR  # see unet.divergence.DIVERGENCE_FACTOR

    def __post_init__(self) -> None:
        check_int(self.warmup_epochs, "plateau.warmup_epochs", low=0)
        check_int(self.patience, "plateau.patience", low=1)
        if not is_real(self.min_delta) or not 0.0 <= self.min_delta < 1.0:
            raise ConfigError(
                f"plateau.min_delta must be a relative improvement in [0, 1) (0.01 = 1 %) "
                f"but got {self.min_delta!r}"
            )
        if not is_real(self.divergence_factor) or not 1.0 < self.divergence_factor < math.inf:
            raise ConfigError(
                f"plateau.divergence_factor must be a finite number > 1 (e.g. 5.0) "
                f"but got {self.divergence_factor!r}"
            )

    def check(self, val_losses: Sequence[float]) -> StopDecision | None:
        """The first epoch at which this rule stops the curve, or None if it never does.

        Args:
            val_losses: the trial's validation loss of epochs 1, 2, ... (epoch = 1-based position).

        Returns:
            The decision (reason "diverged" or "plateau") at the first epoch that triggers it, or None.
        """
        losses = [float(v) for v in val_losses]
        for n in range(1, len(losses) + 1):
            decision = self._divergence(losses[:n]) or self._plateau(losses[:n])
            if decision is not None:
                return decision
        return None

    def _divergence(self, losses: list[float]) -> StopDecision | None:
        n, last, first = len(losses), losses[-1], losses[0]
        if not math.isfinite(last):
            return StopDecision(
                "diverged",
                n,
                {"val_loss": json_number(last), "first_val_loss": json_number(first)},
                f"val loss is {last} at epoch {n}",
            )
        if exceeds(last, first, self.divergence_factor):
            return StopDecision(
                "diverged",
                n,
                {
                    "val_loss": last,
                    "first_val_loss": first,
                    "ratio": last / first,
                    "divergence_factor": self.divergence_factor,
                },
                f"val loss {last:.4g} at epoch {n} is {last / first:.1f}x its first value {first:.4g} "
                f"(limit {self.divergence_factor:g}x)",
            )
        return None

    def _plateau(self, losses: list[float]) -> StopDecision | None:
        n, p = len(losses), self.patience
        if n <= self.warmup_epochs or n <= p:
            return None
        before, window = losses[: n - p], losses[n - p :]
        best_before, best_window = min(before), min(window)
        improvement = _relative_fall(best_before, best_window)
        if improvement > 0 and improvement >= self.min_delta:
            return None
        trend = _trend_fall(losses[max(self.warmup_epochs, n - 2 * p) :], over=p)
        if trend is not None and trend > 0 and trend >= self.min_delta:
            return None
        best_epoch = before.index(best_before) + 1
        detail: dict[str, float | int | str] = {
            "best_before": best_before,
            "best_before_epoch": best_epoch,
            "best_window": best_window,
            "window_start": n - p + 1,
            "window_end": n,
            "improvement": improvement,
            "trend_improvement": "none" if trend is None else trend,
            "min_delta": self.min_delta,
            "patience": p,
        }
        message = (
            f"val loss has not improved by {self.min_delta * 100:g}% on its best {best_before:.4g} "
            f"(epoch {best_epoch}) for {p} epochs (epochs {n - p + 1}-{n}: best {best_window:.4g}, "
            f"{improvement:+.2%})"
        )
        return StopDecision("plateau", n, detail, message)


def _relative_fall(reference: float, value: float) -> float:
    """How much ``value`` is below ``reference``, relative to the reference's magnitude."""
    if reference == 0.0:
        return 0.0 if value >= 0.0 else math.inf
    return (reference - value) / abs(reference)


def _trend_fall(losses: Sequence[float], *, over: int) -> float | None:
    """Relative fall over ``over`` epochs of the least-squares line through ``losses`` (None if < 3)."""
    if len(losses) < 3:
        return None
    y = np.asarray(losses, dtype=float)
    x = np.arange(len(y), dtype=float)
    slope = float(np.dot(x - x.mean(), y - y.mean()) / np.dot(x - x.mean(), x - x.mean()))
    scale = abs(float(y.mean()))
    return -slope * over / scale if scale > 0 else 0.0
