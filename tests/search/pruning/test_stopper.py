"""TrialStopper on real Optuna studies: the own-curve rule first, then the cross-trial rule."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from search.outcome import CONTINUED_AFTER, CONTINUED_FROM, StopDecision
from search.pruning.cross_trial import CrossTrialRule
from search.pruning.plateau import PlateauRule
from search.pruning.stopper import TrialStopper

NAN = math.nan

optuna.logging.set_verbosity(optuna.logging.WARNING)

# The settings the crafted curves below were written for (the study files' own defaults are 1 and 2).
PLATEAU = PlateauRule(warmup_epochs=2, patience=3)

# --- TrialStopper on real studies -------------------------------------------------------------------

PEER_DICE = (0.6, 0.7, 0.8, 0.9)  # peer k reports PEER_DICE[k] at every epoch: median 0.75


def _study(storage: str | None = None, n_peers: int = 4) -> optuna.Study:
    """A maximising study whose own pruner never prunes, with ``n_peers`` completed 8-epoch trials."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner(), storage=storage)
    for dice in PEER_DICE[:n_peers]:
        trial = study.ask()
        for epoch in range(1, 9):
            trial.report(dice, epoch)
        study.tell(trial, dice)
    return study


def _run(
    stopper: TrialStopper, trial: optuna.Trial, losses: list[float], dice: list[float]
) -> StopDecision | None:
    for epoch, (loss, d) in enumerate(zip(losses, dice, strict=True), start=1):
        decision = stopper.after_epoch(trial, epoch, loss, d)
        if decision is not None:
            return decision
    return None


FALLING = [1.0 / e for e in range(1, 9)]  # never a plateau


def test_median_prunes_a_clearly_worse_trial() -> None:
    study = _study()
    trial = study.ask()
    stopper = TrialStopper(
        plateau=PLATEAU, cross_trial=CrossTrialRule(rule="median", warmup_epochs=2, min_trials=4)
    )
    decision = _run(stopper, trial, FALLING, [0.10, 0.12, 0.15, 0.2, 0.2, 0.2, 0.2, 0.2])
    assert decision is not None
    assert (decision.reason, decision.epoch) == ("underperforming", 3)  # epochs 1-2 are warm-up
    assert decision.detail == {
        "rule": "median",
        "dice": 0.15,
        "best_dice": 0.15,
        "median_dice": pytest.approx(0.75),
        "n_trials": 4,
    }
    assert "0.750" in decision.message
    # Every epoch was reported, the stopping one included.
    assert study.trials[-1].intermediate_values == {1: 0.10, 2: 0.12, 3: 0.15}


def test_good_trial_is_not_pruned() -> None:
    study = _study()
    trial = study.ask()
    stopper = TrialStopper(
        plateau=PLATEAU, cross_trial=CrossTrialRule(rule="median", warmup_epochs=2, min_trials=4)
    )
    assert _run(stopper, trial, FALLING, [0.95] * 8) is None
    assert study.trials[-1].intermediate_values == dict.fromkeys(range(1, 9), 0.95)


def test_median_waits_for_min_trials() -> None:
    study = _study(n_peers=3)
    stopper = TrialStopper(
        plateau=PLATEAU, cross_trial=CrossTrialRule(rule="median", warmup_epochs=2, min_trials=4)
    )
    assert _run(stopper, study.ask(), FALLING, [0.1] * 8) is None


def test_plateau_is_reported_before_the_median_rule() -> None:
    # Both rules fire at epoch 3 (plateau: warm-up 0, patience 2; median: warm-up 2); plateau wins.
    study = _study()
    plateau = PlateauRule(warmup_epochs=0, patience=2)
    median = CrossTrialRule(rule="median", warmup_epochs=2, min_trials=4)
    decision = _run(TrialStopper(plateau=plateau, cross_trial=median), study.ask(), [0.7] * 8, [0.1] * 8)
    assert decision is not None
    assert (decision.reason, decision.epoch) == ("plateau", 3)
    # With a falling loss the same Dice is pruned by the median rule at the same epoch.
    decision = _run(TrialStopper(plateau=plateau, cross_trial=median), study.ask(), FALLING, [0.1] * 8)
    assert decision is not None
    assert (decision.reason, decision.epoch) == ("underperforming", 3)


def test_nan_dice_is_reported_as_zero_and_nan_loss_diverges() -> None:
    study = _study()
    stopper = TrialStopper(plateau=PLATEAU, cross_trial=CrossTrialRule(rule="none"))
    decision = _run(stopper, study.ask(), [1.0, 0.9, NAN], [0.3, NAN, NAN])
    assert decision is not None
    assert (decision.reason, decision.epoch) == ("diverged", 3)
    assert study.trials[-1].intermediate_values == {1: 0.3, 2: 0.0, 3: 0.0}


def test_none_rule_never_prunes() -> None:
    study = _study()
    stopper = TrialStopper(plateau=PLATEAU, cross_trial=CrossTrialRule(rule="none"))
    assert _run(stopper, study.ask(), FALLING, [0.0] * 8) is None


def test_successive_halving_threshold_matches_optuna() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    rule = CrossTrialRule(rule="successive_halving", warmup_epochs=1, min_trials=4, reduction_factor=2)
    # Peers run through the rule too, so they record rung values. Best first: without the start-up gate
    # (min_trials=4) the second peer (0.8 < 0.9, top 1/2 of 2) would already be pruned at rung 0.
    for dice in sorted(PEER_DICE, reverse=True):
        trial = study.ask()
        assert _run(TrialStopper(plateau=PLATEAU, cross_trial=rule), trial, FALLING, [dice] * 8) is None
        study.tell(trial, dice)
    decision = _run(TrialStopper(plateau=PLATEAU, cross_trial=rule), study.ask(), FALLING, [0.1] * 8)
    assert decision is not None
    assert (decision.reason, decision.epoch) == ("underperforming", 2)
    # Rung 0 field: 0.9 0.8 0.7 0.6 0.1; 5 // 2 - 1 = index 1 of the descending list.
    assert decision.detail["threshold_dice"] == 0.8
    assert decision.detail["n_competing"] == 5


def test_decisions_do_not_depend_on_storage(tmp_path: Path) -> None:
    decisions = []
    for storage in (None, f"sqlite:///{tmp_path}/study.db"):
        study = _study(storage)
        rule = CrossTrialRule(rule="median", warmup_epochs=2, min_trials=4)
        decision = _run(TrialStopper(plateau=PLATEAU, cross_trial=rule), study.ask(), FALLING, [0.1] * 8)
        assert decision is not None
        decisions.append(decision.to_dict())
    assert decisions[0] == decisions[1]


def test_epochs_must_come_in_order() -> None:
    study = _study()
    stopper = TrialStopper(plateau=PLATEAU)
    trial = study.ask()
    stopper.after_epoch(trial, 1, 1.0, 0.5)
    with pytest.raises(ValueError, match="epoch must be 2"):
        stopper.after_epoch(trial, 3, 0.9, 0.5)


def test_a_pause_is_the_halving_stop_and_its_continuation_is_judged_at_the_next_rung() -> None:
    """Under pause the halving stop says "paused"; the continuation of the paused trial is not judged
    again at the rung it was promoted past, and its next rung is judged with the ancestor's rung values."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    rule = CrossTrialRule(rule="successive_halving", reduction_factor=3, pause=True)
    best = study.ask()
    assert _run(TrialStopper(plateau=PLATEAU, cross_trial=rule), best, FALLING[:3], [0.9] * 3) is None
    study.tell(best, 0.9)
    paused = study.ask()
    decision = _run(TrialStopper(plateau=PLATEAU, cross_trial=rule), paused, FALLING[:1], [0.5])
    assert decision is not None and (decision.reason, decision.epoch) == ("paused", 1)
    assert "paused, continued if it ranks" in (decision.message or "")
    study.tell(paused, state=optuna.trial.TrialState.PRUNED)

    study.enqueue_trial({}, user_attrs={CONTINUED_FROM: paused.number, CONTINUED_AFTER: 1})
    continuation = study.ask()
    stopper = TrialStopper(plateau=PLATEAU, cross_trial=rule, earlier_val_losses=FALLING[:1])
    assert stopper.after_epoch(continuation, 2, FALLING[1], 0.6) is None  # rung 0 is its ancestor's
    assert "completed_rung_0" not in study._storage.get_trial(continuation._trial_id).system_attrs
    decision = stopper.after_epoch(continuation, 3, FALLING[2], 0.7)  # rung 1 (epoch 3): behind 0.9
    assert decision is not None and (decision.reason, decision.detail["rung"]) == ("paused", 1)
    assert decision.detail["n_competing"] == 2


def test_a_halving_stop_at_the_last_epoch_is_final_even_under_pause() -> None:
    """A trial stopped at its last epoch has nothing left to train: a "pause" there would be continued
    for no epochs (found by the replay of a 3-epoch task, whose rung 1 is epoch 3)."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    rule = CrossTrialRule(rule="successive_halving", reduction_factor=3, pause=True)
    best = study.ask()
    assert (
        _run(TrialStopper(plateau=PLATEAU, cross_trial=rule, max_epochs=3), best, FALLING[:3], [0.9] * 3)
        is None
    )
    study.tell(best, 0.9)
    last = study.ask()
    stopper = TrialStopper(plateau=PLATEAU, cross_trial=rule, max_epochs=3)
    decision = _run(stopper, last, FALLING[:3], [0.95, 0.95, 0.5])  # ahead at rung 0, behind at rung 1
    assert decision is not None and (decision.reason, decision.epoch) == ("underperforming", 3)
    assert "paused" not in (decision.message or "")


def test_without_pause_the_halving_stop_is_final() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    rule = CrossTrialRule(rule="successive_halving", reduction_factor=3)
    best = study.ask()
    assert _run(TrialStopper(plateau=PLATEAU, cross_trial=rule), best, FALLING[:1], [0.9]) is None
    study.tell(best, 0.9)
    decision = _run(TrialStopper(plateau=PLATEAU, cross_trial=rule), study.ask(), FALLING[:1], [0.5])
    assert decision is not None and decision.reason == "underperforming"
