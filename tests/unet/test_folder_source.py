"""unet.folder_source: the one folder sequence splits the folder into disjoint train, val and test parts.

The training sets and the held-out test set are built by different calls (``datasets``, ``held_out``),
possibly in different processes (a search and its test scoring); they must agree on the split.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from unet.errors import DataError
from unet.folder_source import FolderSource


def _folder(root: Path, n: int, *, offset: int = 0) -> Path:
    rng = np.random.default_rng(offset)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        image = rng.integers(0, 256, (20, 24), dtype=np.uint8)
        mask = np.zeros((20, 24), dtype=np.uint8)
        mask[5 : 10 + i % 5, 4:12] = 255
        assert cv2.imwrite(str(root / "images" / f"s{offset + i:02d}.png"), image)
        assert cv2.imwrite(str(root / "masks" / f"s{offset + i:02d}.png"), mask)
    return root


def test_train_val_and_test_share_are_disjoint_and_cover_the_folder(tmp_path: Path) -> None:
    source = FolderSource(_folder(tmp_path / "d", 12), val_fraction=0.25, test_fraction=0.25, seed=3)
    plan = source.plan(source.fingerprint(depth=2), depth=2)
    train, val = source.datasets(plan)
    test = source.held_out(in_channels=train.in_channels, plan=plan)
    assert test is not None
    parts = [set(train.stems), set(val.stems), set(test.stems)]
    assert [len(p) for p in parts] == [6, 3, 3]
    assert set.union(*parts) == {f"s{i:02d}" for i in range(12)}
    assert FolderSource(tmp_path / "d").held_out(in_channels=1, plan=plan) is None  # no test share


def test_a_test_folder_holding_a_training_image_is_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", 6)
    test_root = _folder(tmp_path / "t", 2, offset=0)  # the same generator: the same images as s00, s01
    source = FolderSource(root, test_root=test_root)
    plan = source.plan(source.fingerprint(depth=2), depth=2)
    with pytest.raises(DataError, match="held-out test data must share no image"):
        source.held_out(in_channels=1, plan=plan)
    fresh = FolderSource(root, test_root=_folder(tmp_path / "u", 2, offset=50))
    held_out = fresh.held_out(in_channels=1, plan=plan)
    assert held_out is not None and held_out.stems == ["s50", "s51"]
