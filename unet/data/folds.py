"""K-fold cross-validation datasets: the training and validation images as one pool, cut into k folds.

Fold ``j`` validates on part ``j`` of the pool (``unet.data.split.fold_indices``: a permutation seeded by
``seed``, dealt round-robin) and trains on the others, so every image validates exactly once. A folder's
pool is ordered by file stem, so the folds depend on the set of images and the seed only, not on how
the train/validation split cut them; synthetic images keep their order (training images first).
Each fold's training part keeps the training set's transforms (random patches, augmentation) and its
validation part the validation set's (whole images); the samples are shared, not copied.
"""

from __future__ import annotations

import torch

from unet.data.folder import FolderDataset
from unet.data.split import fold_indices
from unet.data.synthetic import SyntheticDataset

Fold = tuple[FolderDataset, FolderDataset] | tuple[SyntheticDataset, SyntheticDataset]


def fold_datasets(
    train: FolderDataset | SyntheticDataset,
    val: FolderDataset | SyntheticDataset,
    *,
    k: int,
    seed: int = 0,
) -> list[Fold]:
    """The ``k`` ``(train, val)`` pairs of a k-fold cross-validation over ``train`` and ``val`` together.

    Args:
        train: the training set; its transforms serve every fold's training part.
        val: the validation set; its (whole-image) items serve every fold's validation part.
        k: the number of folds, at least 2.
        seed: seed of the fold assignment.

    Raises:
        DataProblem: ``too-few-images`` with fewer images than folds.
        ConfigError: ``k`` below 2.
    """
    if isinstance(train, FolderDataset) and isinstance(val, FolderDataset):
        pool = sorted(train.samples + val.samples, key=lambda sample: sample.stem)
        parts = fold_indices(len(pool), k=k, seed=seed, source="the training and validation images")
        folder_folds: list[Fold] = []
        for held in parts:
            chosen = set(held)
            folder_folds.append(
                (
                    train.with_samples([s for i, s in enumerate(pool) if i not in chosen]),
                    val.with_samples([pool[i] for i in held]),
                )
            )
        return folder_folds
    if isinstance(train, SyntheticDataset) and isinstance(val, SyntheticDataset):
        images = torch.cat([train.images, val.images])
        masks = torch.cat([train.masks, val.masks])
        parts = fold_indices(len(images), k=k, seed=seed, source="the synthetic images")
        synthetic_folds: list[Fold] = []
        for held in parts:
            keep = torch.ones(len(images), dtype=torch.bool)
            keep[held] = False
            synthetic_folds.append(
                (
                    SyntheticDataset(images[keep], masks[keep], num_classes=train.num_classes),
                    SyntheticDataset(images[~keep], masks[~keep], num_classes=val.num_classes),
                )
            )
        return synthetic_folds
    raise TypeError(f"cannot cut {type(train).__name__} and {type(val).__name__} into folds")
