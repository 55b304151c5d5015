"""The data a study trains on: inspected and planned once, loaded once per process, shared by its trials.

With ``data.folder.test_fraction`` the held-out test share is split off first and left out of both sets
(``search.execution.testset`` loads it). With ``objective.folds`` k >= 2 the training and validation images
are one pool cut into k folds (``unet.data.folds``): ``StudyData.folds`` holds them, and ``train``/``val``
are fold 1's, the split every single-fit user of the data (the kept checkpoint, ``search.retrain``) sees.

The data plan (``unet.data.plan``) chooses the patch size from the data unless the study file's
``data.folder.patch_size`` (or ``search.run --patch-size``) sets it, and checks that every depth the
space can draw fits the patch: a depth that does not is refused before any trial, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from search.spec.files import SpecError
from search.spec.schema import StudySpec
from search.spec.space import CategoricalParam, IntParam
from unet.config import ModelConfig
from unet.data import FolderDataset, SyntheticDataset, synthetic_datasets
from unet.data.folds import Fold, fold_datasets
from unet.data.plan import DataPlan, Fingerprint, fit_depths, make_plan, masks_fingerprint
from unet.doctor import Report
from unet.folder_source import FolderSource


@dataclass(frozen=True)
class StudyData:
    """Training and validation sets, with the channel and class counts the model is built for."""

    train: FolderDataset | SyntheticDataset
    val: FolderDataset | SyntheticDataset
    in_channels: int
    num_classes: int
    description: str  # one line for the run's header, e.g. "synthetic 128+32 images of 64x64"
    plan: DataPlan  # the patch size and why (stored with the study as user attr "data_plan")
    # objective.folds >= 2: the k (train, val) folds, train/val above being folds[0]; else empty.
    folds: tuple[Fold, ...] = field(default=())


def folder_source(spec: StudySpec) -> FolderSource | None:
    """The study's dataset folder as ``unet.folder_source`` reads it (None for synthetic data)."""
    if spec.data.source != "folder" or spec.data.folder is None:
        return None
    folder = spec.data.folder
    return FolderSource(
        Path(folder.path),
        val_root=folder.val_path,
        val_fraction=spec.split_val_fraction(),
        test_fraction=folder.test_fraction,
        test_root=folder.test_path,
        seed=folder.seed,
        num_classes=folder.num_classes,
        normalization=folder.normalization,
        patch_size=folder.patch_size,
        geometry_on=folder.geometry_on,
    )


def inspect_study_data(spec: StudySpec) -> Report | None:
    """Run the dataset doctor on a folder source (None for synthetic data, which is correct by making)."""
    source = folder_source(spec)
    return source.inspect(depth=max(depth_choices(spec))) if source is not None else None


def depth_choices(spec: StudySpec) -> list[int]:
    """Every ``model.depth`` a trial of the study can have: the space's values, else the fixed one."""
    param = spec.space.get("model.depth")
    if isinstance(param, IntParam):
        return list(range(param.low, param.high + 1, param.step))
    if isinstance(param, CategoricalParam):
        return [int(c) for c in param.choices if isinstance(c, int)]
    fixed = (spec.fixed.get("model") or {}).get("depth")
    return [int(fixed)] if isinstance(fixed, int) else [ModelConfig().depth]


def plan_study_data(spec: StudySpec, fingerprint: Fingerprint) -> DataPlan:
    """The study's data plan; every depth of the space must fit its patch.

    Raises:
        SpecError: a depth the space can draw needs a larger patch (the reason and the fix).
    """
    depths = depth_choices(spec)
    folder = spec.data.folder if spec.data.source == "folder" else None
    plan = make_plan(fingerprint, depth=max(depths), patch_size=folder.patch_size if folder else None)
    refused = fit_depths(plan.patch_size, depths).refused
    if refused:
        kept = [d for d in depths if d not in refused]
        raise SpecError(
            f"model.depth: {'; '.join(refused.values())} ({plan.format()}): narrow model.depth to "
            f"{kept or 'smaller values'} in the study file, or use larger images or patch_size"
        )
    return plan


def load_study_data(spec: StudySpec) -> StudyData:
    """Build the study's datasets; a folder is inspected first and its first error raised.

    Raises:
        DataError: the folder is not usable; the message is the doctor's first error with its fix.
    """
    train: FolderDataset | SyntheticDataset
    val: FolderDataset | SyntheticDataset
    source = folder_source(spec)
    if source is not None:
        f = spec.data.folder
        assert f is not None  # folder_source found it
        plan = plan_study_data(spec, source.fingerprint(depth=max(depth_choices(spec))))
        train, val = source.datasets(plan)
        held_out = f" ({f.test_fraction:g} held out for testing)" if f.test_fraction else ""
        description = (
            f"folder {f.path}: {len(train)} train + {len(val)} val images{held_out}, patches of "
            f"{plan.patch_size}"
        )
    else:
        s = spec.data.synthetic
        made = synthetic_datasets(
            n_train=s.n_train,
            n_val=s.n_val,
            size=s.size,
            foreground_fraction=s.foreground_fraction,
            num_classes=s.num_classes,
            seed=s.seed,
            contrast=s.contrast,
            noise=s.noise,
        )
        masks = {"train": made[0].masks.numpy(), "val": made[1].masks.numpy()}
        train, val = made
        plan = plan_study_data(spec, masks_fingerprint(masks, channels=train.in_channels, dtype="float32"))
        description = f"synthetic: {s.n_train} train + {s.n_val} val images of {s.size}x{s.size}"
    folder = spec.data.folder if spec.data.source == "folder" else None
    seed = folder.seed if folder is not None else spec.data.synthetic.seed
    k = spec.objective.folds
    if k < 2:
        return StudyData(train, val, train.in_channels, train.num_classes, description, plan)
    folds = tuple(fold_datasets(train, val, k=k, seed=seed))
    pooled = f"{len(train)} train + {len(val)} val images"
    train, val = folds[0]
    description = description.replace(
        pooled,
        f"{k}-fold cross-validation over {len(train) + len(val)} train+val images (fold 1: {len(train)} "
        f"train + {len(val)} val)",
    )
    return StudyData(train, val, train.in_channels, train.num_classes, description, plan, folds)
