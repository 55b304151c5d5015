"""The study's data plan: patch from the data or the study file, depths the patch cannot hold refused."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from search.execution.data import depth_choices, load_study_data
from search.spec.files import SpecError
from search.spec.schema import StudySpec, load_spec


def _folder(root: Path, size: tuple[int, int], count: int = 4) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        cv2.imwrite(str(root / "images" / f"{i}.png"), rng.integers(0, 255, size).astype(np.uint8))
        mask = np.zeros(size, np.uint8)
        mask[4:12, 4:12] = 255
        cv2.imwrite(str(root / "masks" / f"{i}.png"), mask)
    return root


def _spec(space: dict, **folder: object) -> StudySpec:
    base = load_spec("unet-smoke").to_dict()
    base.pop("source")
    base["space"] = {**base["space"], **space}
    base["fixed"] = {**base["fixed"], "model": {"base_filters": 4, "norm": "batch"}}
    base["baselines"] = []
    if folder:
        base["data"] = {"source": "folder", "folder": folder}
    return StudySpec.from_dict(base)


def test_synthetic_data_is_planned_from_its_size() -> None:
    data = load_study_data(load_spec("unet-smoke"))  # 32 px images, depth 2
    assert (data.plan.patch_size, data.plan.source) == (32, "planned")


def test_small_images_get_a_small_patch_and_depths_it_cannot_hold_are_refused(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", (48, 48))
    depth = {"model.depth": {"type": "int", "low": 2, "high": 3}}
    data = load_study_data(_spec(depth, path=str(root)))
    assert data.plan.patch_size == 48 and data.train.patch_size == 48  # not a 256 canvas
    deep = {"model.depth": {"type": "categorical", "choices": [2, 3, 4]}}
    assert depth_choices(_spec(deep, path=str(root))) == [2, 3, 4]
    with pytest.raises(
        SpecError, match=r"depth 4 needs patches of at least 64 px .* narrow model.depth to \[2, 3\]"
    ):
        load_study_data(_spec(deep, path=str(root)))
    assert load_study_data(_spec(deep, path=str(root), patch_size=64)).plan.patch_size == 64


def test_k_fold_data_is_fold_1_with_every_fold_beside_it() -> None:
    spec = load_spec("unet-smoke")
    data = spec.to_dict()
    data.pop("source")
    data["objective"] = {**data["objective"], "folds": 3}
    folded = load_study_data(StudySpec.from_dict(data))
    assert len(folded.folds) == 3 and folded.folds[0] == (folded.train, folded.val)
    assert [len(val) for _, val in folded.folds] == [8, 8, 8]  # 16 + 8 images in three parts
    assert folded.description.startswith(
        "synthetic: 3-fold cross-validation over 24 train+val images (fold 1: 16 train + 8 val)"
    )
    assert load_study_data(spec).folds == ()
