"""Held-out test data: loaded beside the study's data, scored once after the search on the best trials.

"Best val Dice of N trials" is optimistic: the maximum of N noisy scores on the same validation set. A
test set that no trial trained or was selected on shows by how much. It is a folder of its own
(``data.folder.test_path``, refused when it is the training or validation folder, or holds one of their
images), a seeded share of the dataset folder (``data.folder.test_fraction``: ``unet.data.split_with_test``,
the same split ``folder_datasets`` leaves out of training and validation) or, for synthetic data,
``data.synthetic.n_test`` images from a generator stream of their own.

After the search the best ``test.top_k`` trials that kept a checkpoint (``search.checkpoints``) are
scored on every test pixel, whole-image as in validation (``unet.validation.evaluate``), once each: the
scores go to the study's user attribute ``test_scores`` (``{trial number: {test_dice, test_iou, val_dice,
epoch, images}}``), shown by the run's summary and the report beside the validation Dice.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.artifacts.exceptions import ArtifactNotFound
from torch.utils.data import Dataset

from search.checkpoints.keep import download, kept
from search.execution.data import StudyData
from search.outcome import TEST_SCORES, stored_test_scores
from search.spec.schema import StudySpec
from search.spec.sections import FolderData
from unet.checkpoint import load_checkpoint
from unet.data import synthetic_datasets
from unet.data.files import Pair, paired_files
from unet.data.heldout import held_out_dataset, held_out_pairs
from unet.errors import DataError, UNetError
from unet.validation import evaluate

logger = logging.getLogger(__name__)


def load_test_set(spec: StudySpec, data: StudyData) -> Dataset | None:
    """The study's held-out test set as whole images, or None when the study has none.

    Raises:
        DataError: the test folder is unusable, or holds an image of the training or validation folder.
    """
    if spec.data.source == "folder":
        folder = spec.data.folder
        if folder is None or (folder.test_path is None and folder.test_fraction == 0):
            return None
        return _folder_test_set(spec, data)
    s = spec.data.synthetic
    if s.n_test == 0:
        return None
    # A seed of its own, drawn from the study seed's sequence: a stream no training or validation image
    # comes from (synthetic_datasets spawns two children of SeedSequence(seed) for those).
    seed = int(np.random.SeedSequence(s.seed).spawn(3)[2].generate_state(1)[0])
    _, test = synthetic_datasets(
        n_train=1,
        n_val=s.n_test,
        size=s.size,
        foreground_fraction=s.foreground_fraction,
        num_classes=s.num_classes,
        seed=seed,
        contrast=s.contrast,
        noise=s.noise,
    )
    return test


def _folder_test_set(spec: StudySpec, data: StudyData) -> Dataset:
    folder = spec.data.folder
    assert folder is not None  # checked by the caller
    if folder.test_path is None:
        pairs = held_out_pairs(
            folder.path,
            test_fraction=folder.test_fraction,
            val_root=folder.val_path,
            val_fraction=spec.split_val_fraction(),
            seed=folder.seed,
        )
    else:
        pairs = _test_folder_pairs(folder)
    return held_out_dataset(
        pairs,
        in_channels=data.in_channels,
        patch_size=data.plan.patch_size,
        normalization=folder.normalization,
        num_classes=data.num_classes,
    )


def _test_folder_pairs(folder: FolderData) -> list[Pair]:
    """The test folder's pairs, checked to share no image with the training or validation folder."""
    assert folder.test_path is not None  # checked by the caller
    pairs = paired_files(folder.test_path)
    seen = {
        _digest(p.image): p.image
        for root in (folder.path, folder.val_path)
        if root
        for p in paired_files(root)
    }
    for pair in pairs:
        twin = seen.get(_digest(pair.image))
        if twin is not None:
            raise DataError(
                f"test image {pair.image} is also {twin}: held-out test data must share no image with "
                f"the training or validation data"
            )
    return pairs


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def score_on_test(
    storage: optuna.storages.BaseStorage, study_name: str, test: Dataset, *, top_k: int
) -> dict[str, dict[str, Any]]:
    """Score the best ``top_k`` kept checkpoints on ``test`` (those not scored yet) and store the scores.

    A checkpoint that is missing or cannot be read is skipped with a warning.

    Returns:
        Every test score of the study, by trial number (as a string: JSON keys).
    """
    study_id = storage.get_study_id_from_name(study_name)
    scores = stored_test_scores(storage.get_study_user_attrs(study_id))
    for entry in kept(storage, study_name)[:top_k]:
        key = str(entry["trial"])
        if key in scores and scores[key].get("artifact_id") == entry["artifact_id"]:
            continue  # scored once: a resumed run does not score it again
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.pt"
            try:
                download(entry, study_name, path)
                checkpoint = load_checkpoint(path)
            except (ArtifactNotFound, UNetError, OSError) as e:
                # One unreadable checkpoint costs its score, not the others' or the run's summary.
                logger.warning(
                    "trial %s's kept checkpoint %s cannot be read (%s): skipped; rebuild it with "
                    "python -m search.retrain --study %s --trial %s --out DIR",
                    key,
                    f"{entry['location']}/{study_name}/{entry['artifact_id']}",
                    _one_line(e).replace(str(path), "it"),
                    study_name,
                    key,
                )
                continue
        with torch.inference_mode():
            result = evaluate(checkpoint.model, test, num_classes=checkpoint.config.model.num_classes)
        scores[key] = {
            "test_dice": result.dice,
            "test_iou": result.iou,
            "val_dice": entry["value"],
            "epoch": entry["epoch"],
            "images": len(test),  # type: ignore[arg-type]
            "artifact_id": entry["artifact_id"],
        }
        logger.info("trial %s: test Dice %.4f (val %.4f)", key, result.dice, entry["value"])
    storage.set_study_user_attr(study_id, TEST_SCORES, scores)
    return scores


def _one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
