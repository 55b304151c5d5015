"""Issue 20: under successive halving most trials end after one epoch, and each was labelled healthy.

The unet-lr run of the issue, as its epoch rows showed it: three adam/adamw trials whose val loss after
epoch 1 was 1.3e3, 5.7e4 and 1.2e5 (the untrained model's about 0.9), pruned as underperforming at the
first rung, and thirteen trials that trained one epoch with val loss near 0.7. All sixteen were
"healthy".
"""

from __future__ import annotations

import math

import pytest

from search.diagnosis import Peers, diagnose
from tests.search.diagnosis.conftest import rows

UNTRAINED = 0.9  # the untrained model's val loss under dice_bce on the nuclei data
EXPLODED = {"lr 0.7": (1.2e5, 0.7), "lr 0.3": (5.7e4, 0.3), "lr 0.03": (1.3e3, 0.03)}
ONE_EPOCH = [(0.62 + 0.01 * i, 0.30 + 0.02 * i, 10 ** (-4 + 0.2 * i)) for i in range(13)]


def _one_epoch(val_loss: float, dice: float, lr: float, *, initial: float = UNTRAINED) -> list[dict]:
    history = rows([0.8], [val_loss], [dice], learning_rate=lr, true_fg=0.1, pred_fg=[0.1])
    history[0]["initial_val_loss"] = initial
    return history


def _peers(*, without: float | None = None) -> Peers:
    first = [v for v, _ in EXPLODED.values()] + [v for v, _, _ in ONE_EPOCH]
    if without is not None:
        first.remove(without)
    dice = [0.0, 0.1, 0.155] + [d for _, d, _ in ONE_EPOCH]
    return Peers(first_val_losses=tuple(first), dice_by_epoch={1: tuple(dice)})


@pytest.mark.parametrize("name", sorted(EXPLODED))
def test_a_first_epoch_val_loss_100x_the_untrained_one_is_diverged(name: str) -> None:
    val_loss, lr = EXPLODED[name]
    found = diagnose(
        _one_epoch(val_loss, 0.05, lr), params={"learning_rate": lr}, stop_reason="underperforming"
    )
    assert found.label == "diverged"
    assert "untrained" in found.summary and "epoch 1" in found.summary
    assert found.changes["learning_rate"] < lr


@pytest.mark.parametrize("name", sorted(EXPLODED))
def test_a_first_epoch_val_loss_100x_the_study_median_is_diverged(name: str) -> None:
    """Rows from before the untrained loss was recorded: the other trials' first epochs decide."""
    val_loss, lr = EXPLODED[name]
    history = _one_epoch(val_loss, 0.05, lr, initial=math.nan)
    found = diagnose(
        history, params={"learning_rate": lr}, stop_reason="underperforming", peers=_peers(without=val_loss)
    )
    assert found.label == "diverged"
    assert "median" in found.summary


def test_without_any_reference_a_single_high_epoch_is_not_called_diverged() -> None:
    found = diagnose(_one_epoch(1.3e3, 0.05, 0.03, initial=math.nan), params={"learning_rate": 0.03})
    assert found.label == "too_early"


@pytest.mark.parametrize(("val_loss", "dice", "lr"), ONE_EPOCH)
def test_a_trial_of_one_epoch_is_too_early_never_healthy(val_loss: float, dice: float, lr: float) -> None:
    found = diagnose(
        _one_epoch(val_loss, dice, lr),
        params={"learning_rate": lr},
        stop_reason="underperforming",
        peers=_peers(without=val_loss),
    )
    assert found.label == "too_early"
    assert "epoch 1" in found.summary and "underperforming" in found.summary
    assert f"{dice:.3f}" in found.summary


def test_a_trial_at_chance_while_the_others_learn_is_named_for_it() -> None:
    peers = Peers(first_val_losses=(0.7,) * 6, dice_by_epoch={1: (0.5,) * 6, 2: (0.6,) * 6})
    history = rows([0.8, 0.78], [0.75, 0.74], [0.02, 0.03], true_fg=0.1, pred_fg=[0.01, 0.01])
    found = diagnose(history, params={"learning_rate": 1e-5}, stop_reason="underperforming", peers=peers)
    assert found.label == "behind_peers"
    assert "0.600" in found.summary  # the others' median at the same epoch


def test_a_short_trial_at_chance_when_no_trial_learns_is_only_too_early() -> None:
    peers = Peers(first_val_losses=(0.7,) * 6, dice_by_epoch={1: (0.02,) * 6})
    found = diagnose(_one_epoch(0.75, 0.02, 1e-3), params={"learning_rate": 1e-3}, peers=peers)
    assert found.label == "too_early"


def test_peers_from_the_epoch_table_leave_the_trial_itself_out() -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "trial_id": [1, 1, 2, 3],
            "epoch": [1, 2, 1, 1],
            "val_loss": [0.7, 0.6, 0.8, 5e4],
            "val_dice": [0.3, 0.4, 0.2, 0.0],
        }
    )
    peers = Peers.from_epochs(frame, exclude_trial_id=3)
    assert sorted(peers.first_val_losses) == [0.7, 0.8]
    assert peers.median_first_val_loss == pytest.approx(0.75)
    assert peers.dice_by_epoch[2] == (0.4,)
