"""The data a study trains on: inspected once, loaded once per process, shared by all its trials."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from search.spec.schema import StudySpec
from unet.data import FolderDataset, SyntheticDataset, folder_datasets, synthetic_datasets
from unet.doctor import Report, inspect_folder


@dataclass(frozen=True)
class StudyData:
    """Training and validation sets, with the channel and class counts the model is built for."""

    train: FolderDataset | SyntheticDataset
    val: FolderDataset | SyntheticDataset
    in_channels: int
    num_classes: int
    description: str  # one line for the run's header, e.g. "synthetic 128+32 images of 64x64"


def inspect_study_data(spec: StudySpec) -> Report | None:
    """Run the dataset doctor on a folder source (None for synthetic data, which is correct by making)."""
    if spec.data.source != "folder" or spec.data.folder is None:
        return None
    folder = spec.data.folder
    return inspect_folder(Path(folder.path), val_root=folder.val_path, num_classes=folder.num_classes)


def load_study_data(spec: StudySpec) -> StudyData:
    """Build the study's datasets; a folder is inspected first and its first error raised.

    Raises:
        DataError: the folder is not usable; the message is the doctor's first error with its fix.
    """
    report = inspect_study_data(spec)
    if report is not None:
        report.raise_if_unusable()
    train: FolderDataset | SyntheticDataset
    val: FolderDataset | SyntheticDataset
    if spec.data.source == "folder":
        f = spec.data.folder
        assert f is not None  # the spec requires the folder section for a folder source
        train, val = folder_datasets(
            Path(f.path),
            val_root=f.val_path,
            val_fraction=f.val_fraction,
            seed=f.seed,
            patch_size=f.patch_size,
            normalization=f.normalization,
            num_classes=f.num_classes,
        )
        description = (
            f"folder {f.path}: {len(train)} train + {len(val)} val images, patches of {f.patch_size}"
        )
    else:
        s = spec.data.synthetic
        train, val = synthetic_datasets(
            n_train=s.n_train,
            n_val=s.n_val,
            size=s.size,
            foreground_fraction=s.foreground_fraction,
            num_classes=s.num_classes,
            seed=s.seed,
            contrast=s.contrast,
            noise=s.noise,
        )
        description = f"synthetic: {s.n_train} train + {s.n_val} val images of {s.size}x{s.size}"
    return StudyData(train, val, train.in_channels, train.num_classes, description)
