"""The plateau/divergence rule on crafted val-loss curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from search.pruning.plateau import PlateauRule
from unet.errors import ConfigError

NAN, INF = math.nan, math.inf

# The settings the crafted curves below were written for (the study files' own defaults are 1 and 2).
PLATEAU = PlateauRule(warmup_epochs=2, patience=3)

LUCKY_EPOCH = [1.0, 0.97, 0.9409, 0.80, 0.8853, 0.8587, 0.833, 0.808, 0.7837, 0.7602, 0.7374, 0.7153]


@pytest.mark.parametrize(
    ("curve", "reason", "epoch"),
    [
        pytest.param([0.5] * 10, "plateau", 4, id="flat: first chance after warm-up 2 + patience 3"),
        # Epoch 7 misses a new best, but the least-squares line through epochs 3-7 still falls 11.5 %
        # per 3 epochs (0.6 -> 0.5), and through 3-8 8.3 %; from epoch 9 the fit (4-9) is flat.
        pytest.param([1.0, 0.8, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], "plateau", 9, id="flat after fall"),
        pytest.param([1.0, NAN, 0.5, 0.4], "diverged", 2, id="nan during warm-up"),
        pytest.param([1.0, 0.9, 0.8, INF], "diverged", 4, id="+inf"),
        pytest.param([1.0, -INF], "diverged", 2, id="-inf"),
        pytest.param([NAN], "diverged", 1, id="nan at epoch 1"),
        # 2.6 > 5 x 0.5: divergence is checked before the plateau that epoch 4 would also trigger.
        pytest.param([0.5, 0.52, 0.6, 2.6], "diverged", 4, id="rises past divergence factor"),
        pytest.param([0.5, 0.52, 0.6, 2.5], "plateau", 4, id="exactly 5x is not diverged"),
        pytest.param([0.5, 3.0], "diverged", 2, id="blow-up during warm-up"),
        pytest.param([0.8 * 0.995**t for t in range(30)], None, None, id="0.5 %/epoch for 30 epochs"),
        # 3 %/epoch with one lucky epoch (0.80 at epoch 4): epochs 5-7 and 6-8 miss its best, but the
        # fit over epochs 3-7 (3-8) still falls 5.5 % (5.9 %) per 3 epochs; epoch 9 (0.784) beats it.
        pytest.param(LUCKY_EPOCH, None, None, id="falling with one lucky epoch"),
        # 1 - 0.997**3 = 0.9 % < 1 % over the window, and only 2 post-warm-up epochs to fit a trend.
        pytest.param([0.8 * 0.997**t for t in range(30)], "plateau", 4, id="0.3 %/epoch is too slow"),
        # Epoch 6: best before 0.49 (epoch 3), window 0.51 0.50 0.52; the fit over epochs 3-6 rises.
        pytest.param([0.50, 0.52, 0.49, 0.51, 0.50, 0.52, 0.49, 0.51], "plateau", 6, id="zigzag flat"),
        pytest.param([0.5, 0.5, 0.5], None, None, id="too short for a plateau"),
        pytest.param([], None, None, id="empty"),
        # A zero or negative first loss gives no ratio, so only NaN/inf count as divergence.
        pytest.param([-0.2, -0.3, 5.0], None, None, id="negative loss: no divergence ratio"),
    ],
)
def test_plateau_rule_decisions(curve: list[float], reason: str | None, epoch: int | None) -> None:
    decision = PLATEAU.check(curve)
    if reason is None:
        assert decision is None
    else:
        assert decision is not None
        assert (decision.reason, decision.epoch) == (reason, epoch)
        json.dumps(decision.to_dict(), allow_nan=False)  # raises on NaN/inf in the detail


@pytest.mark.parametrize("seed", range(10))
def test_noisy_improvement_is_not_stopped(seed: int) -> None:
    # 3 %/epoch decay with 2 % multiplicative noise: epoch-to-epoch the loss often goes up.
    rng = np.random.default_rng(seed)
    curve = 0.8 * 0.97 ** np.arange(30) * (1 + 0.02 * rng.standard_normal(30))
    assert np.any(np.diff(curve) > 0)
    assert PLATEAU.check(curve.tolist()) is None


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_noisy_flat_is_stopped(seed: int) -> None:
    rng = np.random.default_rng(seed)
    curve = 0.5 * (1 + 0.02 * rng.standard_normal(30))
    decision = PLATEAU.check(curve.tolist())
    assert decision is not None
    assert decision.reason == "plateau"
    assert 4 <= decision.epoch <= 12


@pytest.mark.parametrize(
    ("rule", "curve", "epoch"),
    [
        (PlateauRule(warmup_epochs=6, patience=3), [0.5] * 10, 7),
        (PlateauRule(warmup_epochs=0, patience=1), [0.5] * 10, 2),
        (PlateauRule(warmup_epochs=0, patience=5), [0.5] * 10, 6),
        (PlateauRule(warmup_epochs=2, patience=3, min_delta=0.0), [0.5] * 10, 4),
        # min_delta=0: any fall keeps it going (the fit over epochs 4-9 and 5-10 still falls); 11 is flat.
        (
            PlateauRule(warmup_epochs=2, patience=3, min_delta=0.0),
            [0.5, 0.5, 0.5, 0.4999, 0.4998] + [0.4997] * 6,
            11,
        ),
    ],
)
def test_plateau_warmup_and_patience(rule: PlateauRule, curve: list[float], epoch: int) -> None:
    decision = rule.check(curve)
    assert decision is not None
    assert (decision.reason, decision.epoch) == ("plateau", epoch)


def test_check_is_the_same_whole_or_epoch_by_epoch() -> None:
    curve = [1.0, 0.8, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    rule = PLATEAU
    first = next(d for n in range(1, 11) if (d := rule.check(curve[:n])) is not None)
    assert first == rule.check(curve)


def test_plateau_detail_holds_the_numbers() -> None:
    # Epoch 4: window best 0.475 is 5 % below 0.5; epoch 5: 1.04 % below 0.48 (both go on).
    # Epoch 6: best before 0.475 (epoch 3), window 0.476 0.4755 0.477, best 0.4755: -0.105 %, and
    # the fit through epochs 3-6 rises, so no trend veto.
    decision = PLATEAU.check([0.5, 0.48, 0.475, 0.476, 0.4755, 0.477, 0.3])
    assert decision is not None
    assert (decision.reason, decision.epoch) == ("plateau", 6)
    detail = decision.detail
    assert detail["best_before"] == 0.475
    assert detail["best_before_epoch"] == 3
    assert detail["best_window"] == 0.4755
    assert (detail["window_start"], detail["window_end"]) == (4, 6)
    assert detail["improvement"] == pytest.approx(-0.0005 / 0.475)
    assert detail["trend_improvement"] < 0
    assert (detail["min_delta"], detail["patience"]) == (0.01, 3)
    assert decision.message == (
        "val loss has not improved by 1% on its best 0.475 (epoch 3) for 3 epochs "
        "(epochs 4-6: best 0.4755, -0.11%)"
    )


def test_divergence_detail_holds_the_numbers() -> None:
    decision = PLATEAU.check([0.5, 0.45, 0.6, 2.6])
    assert decision is not None
    assert decision.detail["first_val_loss"] == 0.5
    assert decision.detail["val_loss"] == 2.6
    assert decision.detail["ratio"] == pytest.approx(5.2)
    assert decision.detail["divergence_factor"] == 5.0
    nan_decision = PLATEAU.check([0.5, NAN])
    assert nan_decision is not None
    assert nan_decision.detail["val_loss"] == "nan"
    assert "nan" in nan_decision.message


@pytest.mark.parametrize(
    ("kwargs", "quoted"),
    [
        ({"warmup_epochs": -1}, "plateau.warmup_epochs must be an integer >= 0 but got -1"),
        ({"patience": 0}, "plateau.patience must be an integer >= 1 but got 0"),
        ({"patience": 2.5}, "but got 2.5"),
        ({"patience": True}, "but got True"),
        ({"min_delta": -0.1}, "plateau.min_delta must be a relative improvement in [0, 1)"),
        ({"min_delta": 1.0}, "but got 1.0"),
        ({"min_delta": NAN}, "but got nan"),
        ({"min_delta": "1%"}, "but got '1%'"),
        ({"divergence_factor": 1.0}, "plateau.divergence_factor must be a finite number > 1"),
        ({"divergence_factor": INF}, "but got inf"),
    ],
)
def test_plateau_rule_validation(kwargs: dict[str, object], quoted: str) -> None:
    with pytest.raises(ConfigError) as info:
        PlateauRule(**kwargs)  # type: ignore[arg-type]
    assert quoted in str(info.value)
    assert "\n" not in str(info.value)
