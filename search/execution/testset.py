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
from search.execution.data import StudyData, folder_source
from search.outcome import TEST_SCORES, stored_test_scores
from search.spec.schema import StudySpec
from unet.checkpoint import load_checkpoint
from unet.data import synthetic_datasets
from unet.errors import UNetError
from unet.validation import evaluate

logger = logging.getLogger(__name__)


def load_test_set(spec: StudySpec, data: StudyData) -> Dataset | None:
    """The study's held-out test set as whole images, or None when the study has none.

    Raises:
        DataError: the test folder is unusable, or holds an image of the training or validation folder.
    """
    if spec.data.source == "folder":
        source = folder_source(spec)
        return source.held_out(in_channels=data.in_channels, plan=data.plan) if source is not None else None
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
