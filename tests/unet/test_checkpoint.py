"""Checkpoints: model.pt is the best epoch (re-scored, it gives its stored Dice); bad files fail clearly."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from unet.checkpoint import load_checkpoint, save_checkpoint, save_run, write_atomic
from unet.config import ModelConfig, TrainConfig
from unet.data import synthetic_datasets
from unet.data.plan import make_plan, masks_fingerprint
from unet.errors import CheckpointError
from unet.fit import FitResult, fit
from unet.history import EpochRecord
from unet.model import build_model
from unet.validation import evaluate


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, object]:
    train, val = synthetic_datasets(n_train=24, n_val=8, size=32, seed=0)
    # A high learning rate makes the val Dice go up and down, so the best epoch is rarely the last.
    config = TrainConfig(
        model=ModelConfig(in_channels=1, num_classes=1, depth=2, base_filters=4),
        batch_size=8,
        epochs=6,
        learning_rate=0.05,
        device="cpu",
    )
    model = build_model(config.model)
    snapshots: list[dict[str, torch.Tensor]] = []

    def on_epoch(record: EpochRecord) -> None:
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    result = fit(config, train, val, on_epoch, model=model)
    result.snapshots = snapshots  # type: ignore[attr-defined]  # the test's own record of every epoch
    plan = make_plan(masks_fingerprint({"val": val.masks.numpy()}, channels=1, dtype="float32"), depth=2)
    out = tmp_path_factory.mktemp("run")
    save_run(out, config, result, plan=plan, normalization={"name": "zscore"})
    return out, result, val


def test_model_pt_is_the_best_epoch_and_rescores_to_its_dice(run: tuple) -> None:
    out, result, val = run
    best = result.best
    assert result.best_epoch == best.epoch and result.best_state is not None
    checkpoint = load_checkpoint(out / "model.pt")
    assert checkpoint.epoch == best.epoch and checkpoint.metrics["val_dice"] == best.val_dice
    assert checkpoint.plan is not None and checkpoint.plan.patch_size == 32
    assert checkpoint.normalization == {"name": "zscore"} and len(checkpoint.history) == 6
    rescored = evaluate(checkpoint.model, val, num_classes=1)
    assert rescored.dice == pytest.approx(best.val_dice, abs=1e-9)
    last = load_checkpoint(out / "last.pt")
    assert last.epoch == 6 and last.metrics["val_dice"] == result.history[-1].val_dice
    last_dice = evaluate(last.model, val, num_classes=1).dice
    assert last_dice == pytest.approx(result.history[-1].val_dice, abs=1e-9)


def test_best_state_is_the_best_epochs_weights(run: tuple) -> None:
    _, result, _ = run
    snapshot = result.snapshots[result.best_epoch - 1]
    assert all(torch.equal(result.best_state[k], snapshot[k]) for k in snapshot)


def test_save_run_writes_the_best_epoch_to_model_pt_and_the_last_to_last_pt(tmp_path: Path) -> None:
    config = TrainConfig(model=ModelConfig(in_channels=1, num_classes=1, depth=2, base_filters=4))
    torch.manual_seed(0)
    best_model, last_model = build_model(config.model), build_model(config.model)
    records = [_record(1, 0.9), _record(2, 0.5)]
    best_state = {k: v.clone() for k, v in best_model.state_dict().items()}
    result = FitResult(model=last_model, history=records, best_state=best_state, best_epoch=1)
    save_run(tmp_path, config, result)
    best, last = load_checkpoint(tmp_path / "model.pt"), load_checkpoint(tmp_path / "last.pt")
    assert (best.epoch, best.metrics["val_dice"], last.epoch, last.metrics["val_dice"]) == (1, 0.9, 2, 0.5)
    for name, value in best_model.state_dict().items():
        assert torch.equal(best.model.state_dict()[name], value)
        assert torch.equal(last.model.state_dict()[name], last_model.state_dict()[name])


def _record(epoch: int, dice: float) -> EpochRecord:
    return EpochRecord(
        epoch=epoch,
        train_loss=0.5,
        val_loss=0.5,
        val_dice=dice,
        val_iou=dice / 2,
        learning_rate=1e-3,
        grad_norm=1.0,
        grad_norm_max=1.0,
        seconds=1.0,
        images_per_s=10.0,
    )


def test_missing_corrupt_and_foreign_files_fail_in_one_line(tmp_path: Path, run: tuple) -> None:
    out, _, _ = run
    cases = {
        tmp_path / "none.pt": "no such checkpoint file",
        tmp_path / "corrupt.pt": "cannot be read as a checkpoint",
        tmp_path / "foreign.pt": "not a unet-search checkpoint",
        tmp_path / "mismatch.pt": "do not fit this version's U-Net",
    }
    (tmp_path / "corrupt.pt").write_bytes((out / "model.pt").read_bytes()[:200])
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    state = torch.load(out / "model.pt", weights_only=True)
    config = TrainConfig.from_dict({**state["config"], "model": {**state["config"]["model"], "depth": 3}})
    save_checkpoint(
        tmp_path / "mismatch.pt",
        state_dict=state["state_dict"],
        config=config,
        epoch=1,
        metrics={},
        plan=None,
        normalization=None,
    )
    for path, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as caught:
            load_checkpoint(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.fixture
def umask_of() -> Iterator[Callable[[int], None]]:
    """Set the process's umask for one test, and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_write_atomic_gives_files_the_mode_of_the_umask(
    tmp_path: Path, umask_of: Callable[[int], None], mask: int, mode: int
) -> None:
    # Issue 22 case 12: masks, scores.csv and exported models were 0600 whatever the umask.
    umask_of(mask)
    path = tmp_path / "scores.csv"
    write_atomic(path, lambda f: f.write("image,dice\n"))
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert path.read_text() == "image,dice\n" and [p.name for p in tmp_path.iterdir()] == ["scores.csv"]
