"""K-fold datasets: every image validates once, training parts keep the training transforms."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unet.data import fold_indices, folder_datasets, synthetic_datasets
from unet.data.folds import fold_datasets
from unet.data.problems import DataProblem

DSB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dsb2018-nuclei"


@pytest.mark.parametrize("k", [2, 3])
def test_folder_folds_cover_the_pool_once_and_ignore_how_it_was_split(k: int) -> None:
    train, val = folder_datasets(DSB, patch_size=32, seed=0, test_fraction=0.2)
    folds = fold_datasets(train, val, k=k, seed=0)
    pool = sorted(train.stems + val.stems)
    assert len(folds) == k
    assert sorted(s for _, fold_val in folds for s in fold_val.stems) == pool  # each validates once
    for fold_train, fold_val in folds:
        assert sorted(fold_train.stems + fold_val.stems) == pool
        assert not set(fold_train.stems) & set(fold_val.stems)
        assert fold_train[0][0].shape == (3, 32, 32)  # random training patches
        height, width = fold_val.samples[0].mask.shape
        assert fold_val[0][0].shape == (3, height, width)  # whole validation images
    assert [v.stems for _, v in folds] == [[pool[i] for i in part] for part in fold_indices(len(pool), k=k)]
    # Another train/validation split of the same pool gives the same folds.
    other_train, other_val = folder_datasets(DSB, patch_size=32, seed=0, test_fraction=0.2, val_fraction=0.4)
    assert [v.stems for _, v in fold_datasets(other_train, other_val, k=k)] == [v.stems for _, v in folds]


def test_synthetic_folds_split_the_images_of_both_sets() -> None:
    train, val = synthetic_datasets(n_train=5, n_val=3, size=16)
    folds = fold_datasets(train, val, k=3, seed=1)
    pool = torch.cat([train.images, val.images])
    held = torch.cat([fold_val.images for _, fold_val in folds])
    assert sorted(map(len, (v for _, v in folds))) == [2, 3, 3] and held.shape == pool.shape
    assert {x.numpy().tobytes() for x in held} == {x.numpy().tobytes() for x in pool}
    assert all(len(t) + len(v) == 8 for t, v in folds)


def test_more_folds_than_images_is_refused() -> None:
    train, val = synthetic_datasets(n_train=2, n_val=1, size=16)
    with pytest.raises(DataProblem, match="3 image\\(s\\) are too few for 4 folds"):
        fold_datasets(train, val, k=4)
