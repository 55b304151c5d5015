"""The real-image task at native resolution (``NativeFolderTask``): the service's own data path (random
patches for training, whole images for validation), FolderTask's space and snapping, its own cache key, and
its quick table."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from bench.efficiency.folder_task import FolderTask
from bench.efficiency.measure import native_task
from bench.efficiency.native_task import NativeFolderTask
from bench.efficiency.table import load_or_build, table_key
from search.spec.schema import StudySpec


def test_native_task_trains_on_patches_and_validates_whole_images(small_folder: Path) -> None:
    task = NativeFolderTask(str(small_folder), patch=32)
    train, val = task.datasets()
    assert (len(train), len(val)) == (task.n_train, task.n_val) == (6, 2)
    torch.manual_seed(0)
    image, mask = train[0]
    assert image.shape == (train.in_channels, 32, 32) and mask.shape == (32, 32)
    assert set(np.unique(mask.numpy())) <= {0, 1}
    # Validation items keep each held-out image's native size (no downscaling, no crop).
    for index, stem in enumerate(val.stems):
        native = cv2.imread(str(small_folder / "images" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).shape[:2]
        image, mask = val[index]
        assert tuple(image.shape[1:]) == tuple(mask.shape) == native
    # The model gets the images' channels, not FolderTask's gray one.
    params = task.grid()[0]
    assert task.train_config(params).model.in_channels == train.in_channels
    assert task.train_config(params).epochs == task.epochs


def test_native_task_samples_and_snaps_like_folder_task(small_folder: Path) -> None:
    native = NativeFolderTask(str(small_folder))
    downscaled = FolderTask(str(small_folder), n_configs=native.n_configs)
    assert native.grid() == downscaled.grid() and native.space() == downscaled.space()
    for index, params in enumerate(native.grid()):
        assert native.snap(params) == index and native.snap_distance(params) == 0.0
    moved = {**native.grid()[0], "learning_rate": native.grid()[0]["learning_rate"] * 10}
    assert native.distances(moved)[0] == pytest.approx(1 / 3)


def test_native_task_has_its_own_cache_key(small_folder: Path) -> None:
    native = NativeFolderTask(str(small_folder))
    data = native.to_dict()
    assert native.name == f"{small_folder.name}-native" and data["folder"] == native.name
    assert data["patch"] == 128 and "size" not in data and "short_side" not in data
    assert data["folder_digest"] == FolderTask(str(small_folder)).folder_digest
    keys = {
        table_key(native),
        table_key(NativeFolderTask(str(small_folder), patch=96)),
        table_key(FolderTask(str(small_folder), epochs=native.epochs, n_configs=native.n_configs)),
    }
    assert len(keys) == 3


def test_native_quick_table_builds_and_is_reproducible(small_folder: Path, tmp_path: Path) -> None:
    task = native_task(small_folder, quick=True)
    table = load_or_build(task, tmp_path / "a", workers=1)
    assert len(table.rows) == task.n_configs and not table.cached
    assert all(len(row.val_dice) == task.epochs or row.stop_reason for row in table.rows)
    again = load_or_build(task, tmp_path / "b", workers=1)  # seeded: the same curves again
    assert [r.val_loss for r in again.rows] == [r.val_loss for r in table.rows]
    assert load_or_build(task, tmp_path / "a", workers=1).cached
    StudySpec.from_dict(task.study_dict("bench-replay"), origin="test")  # what the replay reads
