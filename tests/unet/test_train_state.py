"""fit resumed from an epoch's state trains on exactly as the uninterrupted run did (CPU)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from unet.config import ModelConfig, TrainConfig
from unet.data import synthetic_datasets
from unet.data.device_geometry import DeviceGeometry
from unet.data.folder import folder_datasets
from unet.errors import CheckpointError, ConfigError
from unet.fit import fit
from unet.train_state import LastState, load_train_state, save_train_state

DSB2018 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018-nuclei"
# Wall-clock fields: the only ones two identical runs may differ in.
TIMES = {"seconds", "images_per_s", "train_s", "val_s", "evidence_s", "data_wait_s"}


def synthetic_with_device_flips():
    train, val = synthetic_datasets(n_train=24, n_val=6, size=32, seed=1)
    train.device_geometry = DeviceGeometry()  # batch flips drawn from fit's own seeded generator
    return train, val


def dsb2018_with_cpu_augmentation():
    # Albumentations on the CPU, reseeded per item from torch's global generator; few whole validation
    # images (each up to 360 x 360), since the comparison needs their scores, not their number.
    return folder_datasets(DSB2018, patch_size=32, val_fraction=0.05)


CASES = [
    pytest.param(
        synthetic_with_device_flips,
        {"optimizer": "adam", "scheduler": "plateau"},
        id="synthetic-adam-plateau",
    ),
    pytest.param(
        dsb2018_with_cpu_augmentation,
        {"optimizer": "sgd", "scheduler": "cosine"},
        id="dsb2018-sgd-cosine",
        marks=pytest.mark.slow,  # about 35 s on a loaded 2-core machine
    ),
]


def config(in_channels: int, **changes) -> TrainConfig:
    model = ModelConfig(in_channels=in_channels, num_classes=1, depth=2, base_filters=8)
    return TrainConfig(model=model, epochs=4, batch_size=8, learning_rate=3e-3, device="cpu", seed=3).replace(
        **changes
    )


def without_times(history) -> list[dict]:
    return [{k: v for k, v in r.to_dict().items() if k not in TIMES} for r in history]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a
    )


class Stop(Exception):
    pass


@pytest.mark.parametrize(("make_data", "changes"), CASES)
def test_two_epochs_then_two_resumed_equal_four_straight(make_data, changes, tmp_path):
    train, val = make_data()
    cfg = config(train[0][0].shape[0], **changes)
    straight = fit(cfg, train, val)
    assert straight.stop_reason is None

    # Stopped from on_epoch after epoch 2 the way the search pauses a trial: by raising.
    last = LastState()

    def stop_after_two(record):
        if record.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(cfg, train, val, stop_after_two, last_state=last)
    save_train_state(tmp_path / "state.pt", last.take())
    state = load_train_state(tmp_path / "state.pt")
    assert state.epoch == 2

    seen = []
    resumed = fit(cfg, train, val, lambda r: seen.append(r.epoch), resume=state)
    assert seen == [3, 4]  # on_epoch sees the new epochs only, with their true numbers
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4]
    for a, b in zip(without_times(resumed.history), without_times(straight.history), strict=True):
        assert same(a, b), (a, b)
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    assert resumed.best_epoch == straight.best_epoch
    assert straight.best_state is not None and resumed.best_state is not None
    assert all(torch.equal(resumed.best_state[k], v) for k, v in straight.best_state.items())


def test_a_resumed_run_differs_without_the_random_states(tmp_path):
    """The comparison above can fail: the same weights with fresh random states train differently."""
    train, val = synthetic_with_device_flips()
    cfg = config(1)
    straight = fit(cfg, train, val)
    last = LastState()
    fit(cfg, train, val, lambda r: r.epoch == 2, last_state=last)
    state = last.take()
    state.rng = dict(state.rng, loader=torch.Generator().manual_seed(99).get_state())
    resumed = fit(cfg, train, val, resume=state)
    assert without_times(resumed.history)[2]["train_loss"] != without_times(straight.history)[2]["train_loss"]


def test_resume_past_the_last_epoch_says_to_raise_epochs():
    train, val = synthetic_datasets(n_train=8, n_val=4, size=16, seed=0)
    last = LastState()
    cfg = config(1, epochs=2)
    fit(cfg, train, val, last_state=last)
    with pytest.raises(ConfigError, match="set epochs above 2"):
        fit(cfg, train, val, resume=last.take())


def test_no_state_before_the_first_epoch_and_a_foreign_file_is_refused(tmp_path):
    assert not LastState().ready
    with pytest.raises(RuntimeError, match="no epoch has finished"):
        LastState().take()
    torch.save({"format": "something else"}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a version-1"):
        load_train_state(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="no such train state"):
        load_train_state(tmp_path / "missing.pt")
