"""K-fold cross-validation of one trial (``objective.folds`` k >= 2): the folds after the first.

A trial trains fold 1 exactly as a single-split trial trains (``search.execution.objective``): every
epoch is written to the epoch table, reported to Optuna and put to the pruning rules. Only when fold 1
ends unpruned do folds 2..k train, one after the other, with the same configuration and seed, each for
``budget.max_epochs`` epochs, without reports or pruning. The trial's value is the mean over the k folds
of each fold's best-epoch validation Dice, the single split's definition applied per fold.

Why pruning stays sound: every trial's intermediate values are fold 1's curve, on the same fold-1 split
for every trial, so the cross-trial rules compare like with like and the plateau rule watches one
continuous curve; a trial pruned on fold 1 runs no other fold, so pruning saves k times the epochs it
saved before. The price: a configuration that only fold 1 disfavours is pruned on fold 1's evidence, as it
would be with one split.

What is stored: the per-fold values and best epochs as trial user attributes (``FOLD_VAL_DICE``,
``FOLD_BEST_EPOCHS``; the report shows them), the epoch table and intermediate values of fold 1 only,
``best_epoch`` and the kept checkpoint of fold 1 (its best epoch's weights, trained without fold 1's
validation images: the model the fold-1 curve describes). A later fold that diverges prunes the trial
(``diverged``, naming the fold), as divergence does on a single split. The live progress line counts fold
1's epochs only (the later folds report none), so its time estimate runs short for k-fold studies.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from search.outcome import FOLD_BEST_EPOCHS, FOLD_VAL_DICE, AttrWriter, StopDecision
from unet.config import TrainConfig
from unet.data.folds import Fold
from unet.fit import FitResult, fit
from unet.history import EpochRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldScores:
    """The folds' best-epoch validation Dice and epochs, fold 1 first, and a later fold's divergence."""

    values: tuple[float, ...]
    epochs: tuple[int, ...]
    diverged: StopDecision | None = None  # set when a later fold diverged (the others did not run)

    @property
    def mean(self) -> float:
        """The trial's value: the mean of the folds' values."""
        return statistics.fmean(self.values)

    def record(self, write: AttrWriter) -> None:
        """Store the per-fold values and epochs on the trial."""
        write(FOLD_VAL_DICE, list(self.values))
        write(FOLD_BEST_EPOCHS, list(self.epochs))


def best_of(result: FitResult) -> tuple[float, int]:
    """A fit's value as the objective defines it: its best epoch's validation Dice (0.0 without one)."""
    best = result.best
    return (best.val_dice, best.epoch) if best is not None else (0.0, 0)


def run_other_folds(
    config: TrainConfig,
    folds: Sequence[Fold],
    first: FitResult,
    *,
    on_epoch: Callable[[int, EpochRecord], None] | None = None,
) -> FoldScores:
    """Train folds 2..k after fold 1 (``first``) finished unpruned, and score every fold.

    Args:
        config: the trial's training config (the same for every fold).
        folds: the k ``(train, val)`` folds (``search.execution.data.StudyData.folds``).
        first: fold 1's finished fit.
        on_epoch: called with (fold, record) after every epoch of folds 2..k; it may raise to end the
            trial (the objective checks there that no other process took the trial over).

    Returns:
        Every fold's score, or the scores up to a fold that diverged, with that fold's decision.
    """
    value, epoch = best_of(first)
    values, epochs = [value], [epoch]
    for number, (train, val) in enumerate(folds[1:], start=2):

        def report(record: EpochRecord, fold: int = number) -> None:
            if on_epoch is not None:
                on_epoch(fold, record)

        result = fit(config, train, val, report)
        if result.stop_reason == "diverged":
            message = f"fold {number}: {result.stop_message or 'diverged'}"
            last = result.history[-1].epoch if result.history else 0
            decision = StopDecision(
                "diverged", last, {"fit": result.stop_message or "", "fold": number}, message
            )
            return FoldScores(tuple(values), tuple(epochs), decision)
        value, epoch = best_of(result)
        values.append(value)
        epochs.append(epoch)
        logger.info("fold %d of %d: val Dice %.4f at epoch %d", number, len(folds), value, epoch)
    return FoldScores(tuple(values), tuple(epochs))
