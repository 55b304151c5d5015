"""``TrialStopper``: one trial's pruning, epoch by epoch: its own curve first, then the other trials.

Every decision depends only on the curves (and, for the cross-trial rule, on the intermediate values
stored in the study), never on timing or process state, so the local and the Ray backend agree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search.outcome import PAUSED, StopDecision
from search.pruning.cross_trial import CrossTrialRule, halving_rung
from search.pruning.plateau import PlateauRule

logger = logging.getLogger(__name__)


class TrialStopper:
    """Per-trial adapter to Optuna: reports val Dice every epoch and decides whether to stop.

    One instance per trial. The own-curve rule (plateau, divergence) goes first, then the cross-trial
    pruner built from ``cross_trial``; that pruner is used whatever pruner the study itself was created
    with, so the decision does not depend on how the backend made the study.

    A NaN/inf val Dice is reported to Optuna as 0.0: Optuna stores NaN, but MedianPruner then ignores
    that value when it computes the other trials' median (biasing it upwards) and SuccessiveHalvingPruner
    prunes a NaN at once; Dice lies in [0, 1], so a run with no measurable overlap scores the worst value.

    A continuation of a paused trial passes the val losses of the epochs it continues after
    (``earlier_val_losses``): its first epoch is the one after them, and the plateau rule sees the whole
    curve. With ``cross_trial.pause`` the cross-trial rule's stop is "paused" instead of "underperforming",
    except at the trial's last epoch (``max_epochs``), where nothing is left to continue.
    """

    def __init__(
        self,
        *,
        plateau: PlateauRule | None = None,
        cross_trial: CrossTrialRule | None = None,
        earlier_val_losses: Sequence[float] = (),
        max_epochs: int | None = None,
    ) -> None:
        self.max_epochs = max_epochs
        self.plateau = plateau if plateau is not None else PlateauRule()
        self.cross_trial = cross_trial if cross_trial is not None else CrossTrialRule()
        self._pruner = self.cross_trial.build()
        self._val_losses: list[float] = [float(v) for v in earlier_val_losses]

    def after_epoch(
        self, trial: optuna.Trial, epoch: int, val_loss: float, val_dice: float
    ) -> StopDecision | None:
        """Report epoch ``epoch`` of ``trial`` and say whether to stop it.

        Args:
            trial: the running Optuna trial (single objective, maximised val Dice).
            epoch: the 1-based epoch just finished; must follow the previous call's epoch.
            val_loss: the epoch's validation loss (may be NaN/inf).
            val_dice: the epoch's validation Dice (may be NaN).

        Returns:
            A StopDecision ("diverged", "plateau", "underperforming" or "paused"), or None to go on.

        Raises:
            ValueError: ``epoch`` is not the next epoch of this trial.
        """
        if epoch != len(self._val_losses) + 1:
            raise ValueError(
                f"epoch must be {len(self._val_losses) + 1} (epochs are reported in order from 1) "
                f"but got {epoch!r}"
            )
        self._val_losses.append(float(val_loss))
        dice = float(val_dice) if math.isfinite(float(val_dice)) else 0.0
        trial.report(dice, epoch)
        decision = self.plateau.check(self._val_losses)
        if decision is None:
            # Trial.storage and get_trial are public; the trial id is the one private piece (the same
            # lookup Trial.should_prune does, but with our pruner instead of the study's).
            frozen = trial.storage.get_trial(trial._trial_id)
            if self._pruner.prune(trial.study, frozen):
                decision = self._underperforming(trial, frozen, epoch, dice)
        if decision is not None:
            logger.info("trial %d stopped: %s: %s", trial.number, decision.reason, decision.message)
        return decision

    def _underperforming(
        self, trial: optuna.Trial, frozen: FrozenTrial, epoch: int, dice: float
    ) -> StopDecision:
        rule, study = self.cross_trial, trial.study
        detail: dict[str, float | int | str] = {"rule": rule.rule, "dice": dice}
        if rule.rule == "median":
            # As MedianPruner compares: this trial's best Dice so far against the NaN-ignoring median
            # of the COMPLETED trials' Dice at this step (pruned trials are not peers there).
            best = max(frozen.intermediate_values.values())
            peers = [
                t.intermediate_values[epoch]
                for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if epoch in t.intermediate_values
            ]
            median = float(np.nanmedian(peers))
            detail |= {"best_dice": best, "median_dice": median, "n_trials": len(peers)}
            message = (
                f"best val Dice {best:.3f} is below the median {median:.3f} of {len(peers)} completed "
                f"trials at epoch {epoch} (median rule)"
            )
        else:
            # The pruner has just stored this trial's rung value, so read the trial again.
            attrs = trial.storage.get_trial(trial._trial_id).system_attrs
            rung, threshold, n_competing = halving_rung(study, attrs, rule.reduction_factor)
            detail |= {"rung": rung, "threshold_dice": threshold, "n_competing": n_competing}
            message = (
                f"val Dice {dice:.3f} at epoch {epoch} is below {threshold:.3f}, the top 1/"
                f"{rule.reduction_factor} of {n_competing} trials at rung {rung} (successive halving)"
            )
            if rule.pause and (self.max_epochs is None or epoch < self.max_epochs):
                message += ": paused, continued if it ranks there as more trials arrive"
                return StopDecision(PAUSED, epoch, detail, message)
        return StopDecision("underperforming", epoch, detail, message)
