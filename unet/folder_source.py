"""A dataset folder read the one way every command reads it: inspect, plan, datasets, held-out test.

``python -m unet.train``, the search service (``search.execution.data``), its held-out test set
(``search.execution.testset``) and ``search.retrain`` (through the service's data) all load a folder through
:class:`FolderSource`, so that the split, the plan and the test share are the same whoever trains:

1. :meth:`FolderSource.fingerprint`: the dataset doctor (``unet.doctor.inspect_folder``) reads every file
   with the checks training applies; the first error is raised with its fix, else the data's fingerprint.
2. :meth:`FolderSource.plan`: the patch size from that fingerprint (``unet.data.plan``), unless set.
3. :meth:`FolderSource.datasets`: the training and validation sets (``unet.data.folder_datasets``).
4. :meth:`FolderSource.held_out`: the test share or test folder as whole images (``unet.data.heldout``).

Checking that the model's depths fit the patch stays with the caller: a command names its own setting
(``--depth``, a study file's ``model.depth``) in the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unet.config import VAL_FRACTION
from unet.data.folder import FolderDataset, folder_datasets
from unet.data.heldout import held_out_dataset, held_out_pairs, test_folder_pairs
from unet.data.plan import DataPlan, Fingerprint, make_plan
from unet.doctor.inspect import inspect_folder
from unet.doctor.report import Report


@dataclass(frozen=True)
class FolderSource:
    """A dataset folder (``images/``, ``masks/``) and how it is split, read and held out."""

    root: Path  # the dataset folder
    val_root: Path | None = None  # a validation folder of the same layout; None: val_fraction of root
    val_fraction: float = VAL_FRACTION  # validation share of root without val_root
    test_fraction: float = 0.0  # held-out test share of root (0: none), in neither training set
    test_root: Path | None = None  # or a held-out test folder, sharing no image with root and val_root
    seed: int = 0  # seed of the train/validation/test split
    num_classes: int | None = None  # None or 1: binary masks; K >= 2: class indices 0..K-1
    normalization: str = "zscore"  # a name from unet.data.normalization.NORMALIZATIONS
    patch_size: int | None = None  # the training patch side; None: planned from the data
    geometry_on: str = "cpu"  # where flips and rotations run: cpu or device (unet.data.folder_datasets)

    def inspect(self, *, depth: int) -> Report:
        """The dataset doctor's report on the folder, its split and a plan for a U-Net of ``depth``."""
        return inspect_folder(
            self.root,
            val_root=self.val_root,
            num_classes=self.num_classes,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
            patch_size=self.patch_size,
            depth=depth,
        )

    def fingerprint(self, *, depth: int) -> Fingerprint:
        """Inspect the folder (:meth:`inspect`) and return the data's fingerprint.

        Raises:
            DataError: the folder is not usable; the message is the doctor's first error with its fix.
        """
        report = self.inspect(depth=depth)
        report.raise_if_unusable()
        fingerprint = report.fingerprint()
        assert fingerprint is not None  # a usable folder has images
        return fingerprint

    def plan(self, fingerprint: Fingerprint, *, depth: int) -> DataPlan:
        """The data plan for a U-Net of ``depth`` (at most): the set patch size, else the planned one."""
        return make_plan(fingerprint, depth=depth, patch_size=self.patch_size)

    def datasets(self, plan: DataPlan) -> tuple[FolderDataset, FolderDataset]:
        """The training (patches of the plan's size) and validation (whole images) sets.

        Raises:
            DataError, ConfigError: as ``unet.data.folder_datasets``.
        """
        return folder_datasets(
            self.root,
            val_root=self.val_root,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
            patch_size=plan.patch_size,
            normalization=self.normalization,
            num_classes=self.num_classes,
            geometry_on=self.geometry_on,
        )

    def held_out(self, *, in_channels: int, plan: DataPlan) -> FolderDataset | None:
        """The held-out test images (the test folder, else the test share) as whole images, or None.

        Args:
            in_channels: the training images' channel count.
            plan: the training data's plan (its patch side tiles the larger images).

        Raises:
            DataError: an unusable test folder, or one holding an image of the training or validation data.
        """
        if self.test_root is not None:
            pairs = test_folder_pairs(self.test_root, beside=[self.root, self.val_root])
        elif self.test_fraction:
            pairs = held_out_pairs(
                self.root,
                test_fraction=self.test_fraction,
                val_root=self.val_root,
                val_fraction=self.val_fraction,
                seed=self.seed,
            )
        else:
            return None
        return held_out_dataset(
            pairs,
            in_channels=in_channels,
            patch_size=plan.patch_size,
            normalization=self.normalization,
            num_classes=self.num_classes,
        )
