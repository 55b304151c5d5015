"""fit(): learning, divergence, stopping, reproducibility and the history it returns."""

from __future__ import annotations

import math

import pytest
import torch

from unet.config import ModelConfig, TrainConfig
from unet.data import synthetic_datasets
from unet.errors import ConfigError
from unet.fit import check_config, fit
from unet.history import EPOCH_FIELDS, EpochRecord


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_datasets(n_train=64, n_val=16, size=64, seed=0)


def small_config(**changes) -> TrainConfig:
    model = ModelConfig(in_channels=1, num_classes=1, depth=3, base_filters=16)
    return TrainConfig(model=model, epochs=4, batch_size=8, learning_rate=3e-3, device="cpu").replace(
        **changes
    )


def test_synthetic_set_trains_to_high_dice(synthetic):
    train, val = synthetic
    result = fit(small_config(), train, val)
    assert result.stop_reason is None
    assert len(result.history) == 4
    assert result.best is not None and result.best.val_dice >= 0.8
    # The loss falls: the last epoch is well below the first.
    assert result.history[-1].train_loss < 0.8 * result.history[0].train_loss


def test_history_has_every_field(synthetic):
    train, val = synthetic
    record = fit(small_config(epochs=1), train, val).history[0]
    assert tuple(record.to_dict()) == EPOCH_FIELDS
    assert record.epoch == 1
    assert record.learning_rate == pytest.approx(3e-3)
    assert record.images_per_s > 0 and record.seconds > 0
    assert record.grad_norm > 0 and record.grad_norm_max >= record.grad_norm
    assert 0.0 <= record.val_iou <= record.val_dice <= 1.0


def test_every_record_holds_the_untrained_models_val_loss(synthetic):
    """Issue 20: the reference an exploded first epoch is measured against, taken before the first step."""
    from unet.losses import build_loss
    from unet.model import build_model
    from unet.validation import evaluate

    train, val = synthetic
    config = small_config(epochs=2)
    history = fit(config, train, val).history
    torch.manual_seed(config.seed)
    untrained = build_model(config.model)
    expected = evaluate(untrained, val, criterion=build_loss(config.loss, num_classes=1), num_classes=1).loss
    assert [r.initial_val_loss for r in history] == [pytest.approx(expected, rel=1e-4)] * 2
    assert history[0].val_loss < history[0].initial_val_loss


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_learning_rate_10_stops_as_diverged(synthetic, optimizer):
    train, val = synthetic
    result = fit(small_config(learning_rate=10.0, optimizer=optimizer), train, val)
    assert result.stop_reason == "diverged"
    assert len(result.history) < 4
    assert "lower the learning rate" in result.stop_message


def test_nan_loss_stops_at_once(synthetic):
    train, val = synthetic
    poisoned = [(img * float("nan"), mask) for img, mask in (train[i] for i in range(16))]
    result = fit(small_config(), poisoned, val)
    assert result.stop_reason == "diverged"
    assert len(result.history) == 1
    assert math.isnan(result.history[0].train_loss)
    assert "step 1" in result.stop_message


def test_on_epoch_sees_every_epoch_and_can_stop(synthetic):
    train, val = synthetic
    seen: list[EpochRecord] = []

    def on_epoch(record: EpochRecord) -> bool:
        seen.append(record)
        return record.epoch == 2

    result = fit(small_config(), train, val, on_epoch)
    assert [r.epoch for r in seen] == [1, 2]
    assert result.stop_reason == "callback"
    assert result.history == seen


def test_on_epoch_exception_propagates(synthetic):
    train, val = synthetic

    class Pruned(Exception):
        pass

    def on_epoch(record: EpochRecord) -> None:
        raise Pruned

    with pytest.raises(Pruned):
        fit(small_config(), train, val, on_epoch)


def test_same_seed_same_history_on_cpu(synthetic):
    train, val = synthetic
    a = fit(small_config(epochs=2), train, val)
    b = fit(small_config(epochs=2), train, val)
    fields = ("train_loss", "val_loss", "val_dice", "grad_norm")
    assert [[getattr(r, f) for f in fields] for r in a.history] == [
        [getattr(r, f) for f in fields] for r in b.history
    ]
    c = fit(small_config(epochs=2, seed=1), train, val)
    assert c.history[0].train_loss != a.history[0].train_loss


@pytest.mark.parametrize("scheduler", ["none", "plateau", "cosine"])
def test_schedulers(synthetic, scheduler):
    train, val = synthetic
    result = fit(small_config(epochs=3, scheduler=scheduler), train, val)
    rates = [r.learning_rate for r in result.history]
    if scheduler == "cosine":
        assert rates[0] > rates[1] > rates[2] > 0
    else:
        assert rates == [pytest.approx(3e-3)] * 3


def test_grad_clip_and_channels_last_off(synthetic):
    train, val = synthetic
    result = fit(small_config(epochs=1, grad_clip=0.1, channels_last=False), train, val)
    assert result.history[0].grad_norm > 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loss": "dise"}, "Did you mean 'dice'"),
        ({"optimizer": "adamm"}, "Did you mean 'adam'"),
        ({"scheduler": "cosin"}, "Did you mean 'cosine'"),
        ({"model": {"norm": "bach"}}, "Did you mean 'batch'"),
        ({"loss": "ce"}, "ce"),
    ],
)
def test_bad_names_fail_before_training(changes, message):
    with pytest.raises(ConfigError, match=message):
        check_config(small_config(**changes))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"learning_rate": -0.1}, "learning_rate must be > 0.0 but got -0.1"),
        ({"batch_size": 0}, "batch_size must be >= 1 but got 0"),
        ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N but got 'tpu'"),
    ],
)
def test_bad_numbers_fail_when_the_config_is_made(changes, message):
    with pytest.raises(ConfigError, match=message):
        small_config(**changes)


def test_channels_must_match_the_data(synthetic):
    train, val = synthetic
    with pytest.raises(ConfigError, match=r"model\.in_channels is 3 but the images have 1 channel"):
        fit(small_config(model={"in_channels": 3}), train, val)


def test_multiclass_trains(synthetic):
    train, val = synthetic_datasets(n_train=16, n_val=8, size=32, num_classes=3, seed=0)
    config = small_config(epochs=1, loss="dice_ce", model={"num_classes": 3, "depth": 2, "base_filters": 8})
    result = fit(config, train, val)
    assert 0.0 <= result.history[0].val_dice <= 1.0
    assert result.model(torch.zeros(1, 1, 32, 32)).shape == (1, 3, 32, 32)
