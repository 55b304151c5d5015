"""The data plan: the patch size a dataset needs, chosen from its fingerprint before any training.

nnU-Net's "plan" is the reference point: look at the data first (image sizes, channels, dtype, foreground
share), then choose the patch. Here the patch is a square of side

    the median image's longer side, rounded up to the U-Net's stride 2**depth, capped at ``max_patch``

so small images are padded only to the next multiple of the stride (never mirrored into a big canvas)
and large ones are cut into patches for training and scored by overlapping tiles
(``unet.inference``). A U-Net of depth ``d`` needs patches of at least ``MIN_BOTTOM * 2**d`` pixels, so
that its bottom level keeps a ``MIN_BOTTOM`` x ``MIN_BOTTOM`` feature map; ``fit_depths`` says which of
a search space's depths a patch can hold and why the others cannot.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from unet.errors import ConfigError

# Bottom feature map a patch must leave at the deepest level (nnU-Net stops pooling below 4 pixels).
MIN_BOTTOM = 4
# Largest planned patch side: memory grows with its square; larger images are tiled.
DEFAULT_MAX_PATCH = 256
# The depth the plan rounds to when no depths are given (unet.config.ModelConfig's default).
DEFAULT_DEPTH = 4

PatchSource = Literal["planned", "given"]


@dataclass(frozen=True)
class Fingerprint:
    """What the plan is made from: the images' sizes and content, by split.

    Attributes:
        sizes: ``(height, width)`` of every training and validation image.
        channels: image channels after loading (1 or 3).
        dtype: stored dtype of the images (``uint8``, ``uint16``; ``float32`` for synthetic data).
        foreground: share of all pixels that are foreground (any class but 0).
        classes: split name (``train``, ``val``) -> foreground classes present in that split.
    """

    sizes: tuple[tuple[int, int], ...]
    channels: int
    dtype: str
    foreground: float
    classes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def median_size(self) -> tuple[int, int]:
        """The median height and median width (over images, each taken separately)."""
        if not self.sizes:
            raise ConfigError("the dataset fingerprint has no images: there is nothing to plan for")
        return (
            int(statistics.median_low(h for h, _ in self.sizes)),
            int(statistics.median_low(w for _, w in self.sizes)),
        )

    def to_dict(self) -> dict[str, Any]:
        ordered = sorted(self.sizes, key=_area)
        return {
            "images": len(self.sizes),
            "median_size": list(self.median_size()) if self.sizes else None,
            "smallest": list(ordered[0]) if ordered else None,
            "largest": list(ordered[-1]) if ordered else None,
            "channels": self.channels,
            "dtype": self.dtype,
            "foreground": self.foreground,
            "classes": {k: list(v) for k, v in self.classes.items()},
        }


@dataclass(frozen=True)
class DataPlan:
    """The patch every trial trains on and validates with, and why it was chosen.

    Attributes:
        patch_size: side of the square training patches and of the validation/prediction tiles.
        stride: ``2**depth`` of the deepest U-Net the plan was made for; the patch is a multiple of it.
        source: where the patch size came from: planned from the data, or given (study file, option).
        reason: one line saying how the patch size follows from the data.
        fingerprint: the dataset summary the plan was made from (``Fingerprint.to_dict``).
    """

    patch_size: int
    stride: int
    source: PatchSource
    reason: str
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataPlan:
        return cls(
            patch_size=int(data["patch_size"]),
            stride=int(data["stride"]),
            source=data["source"],
            reason=str(data["reason"]),
            fingerprint=dict(data.get("fingerprint") or {}),
        )

    def format(self) -> str:
        """One line for ``--dry-run``, the doctor and run headers."""
        return f"patch {self.patch_size}x{self.patch_size} ({self.source}): {self.reason}"


@dataclass(frozen=True)
class DepthFit:
    """Which U-Net depths a patch can hold: the ones kept and, for the others, why not."""

    kept: tuple[int, ...]
    refused: dict[int, str]


def make_plan(
    fingerprint: Fingerprint,
    *,
    depth: int = DEFAULT_DEPTH,
    max_patch: int = DEFAULT_MAX_PATCH,
    patch_size: int | None = None,
) -> DataPlan:
    """Choose the patch size for a dataset.

    Args:
        fingerprint: the dataset's summary.
        depth: the deepest U-Net to plan for; the planned patch is a multiple of ``2**depth``.
        max_patch: the largest planned patch side (memory); larger images are tiled.
        patch_size: an explicit patch side (a study file's ``data.folder.patch_size``, ``--patch-size``),
            used as given.

    Raises:
        ConfigError: ``patch_size`` or ``max_patch`` below 8, or a fingerprint without images.
    """
    stride = 2**depth
    median_h, median_w = fingerprint.median_size()
    longer = max(median_h, median_w)
    summary = fingerprint.to_dict()
    if patch_size is not None:
        _check_side(patch_size, "patch_size")
        reason = f"set explicitly; the median image is {median_w}x{median_h}"
        return DataPlan(patch_size, stride, "given", reason, summary)
    _check_side(max_patch, "max_patch")
    needed = -(-longer // stride) * stride
    cap = max(max_patch // stride * stride, stride)
    if needed <= cap:
        reason = (
            f"the median image is {median_w}x{median_h}: its longer side rounded up to the stride "
            f"{stride}; smaller images are padded to the stride, not mirrored"
        )
        return DataPlan(needed, stride, "planned", reason, summary)
    reason = (
        f"the median image is {median_w}x{median_h}, larger than the memory cap {cap}: "
        "training takes patches of the cap, validation and prediction tile the whole image"
    )
    return DataPlan(cap, stride, "planned", reason, summary)


def masks_fingerprint(
    masks: Mapping[str, Iterable[np.ndarray] | np.ndarray], *, channels: int, dtype: str
) -> Fingerprint:
    """The fingerprint of data held in memory: split name -> its masks (class indices, any sizes)."""
    sizes: list[tuple[int, int]] = []
    foreground = pixels = 0
    classes: dict[str, tuple[int, ...]] = {}
    for name, split in masks.items():
        present: set[int] = set()
        for mask in split:
            sizes.append((int(mask.shape[0]), int(mask.shape[1])))
            foreground += int(np.count_nonzero(mask))
            pixels += int(mask.size)
            present.update(int(c) for c in np.unique(mask) if c)
        classes[name] = tuple(sorted(present))
    return Fingerprint(tuple(sizes), channels, dtype, foreground / pixels if pixels else 0.0, classes)


def fit_depths(patch_size: int, depths: Iterable[int]) -> DepthFit:
    """Split U-Net depths into those a ``patch_size`` patch can hold and those it cannot, with reasons.

    A depth ``d`` needs ``patch_size >= MIN_BOTTOM * 2**d``: the bottom level keeps a feature map of at
    least ``MIN_BOTTOM`` pixels per side instead of mostly padding.
    """
    kept: list[int] = []
    refused: dict[int, str] = {}
    for depth in sorted(set(depths)):
        needed = MIN_BOTTOM * 2**depth
        if patch_size >= needed:
            kept.append(depth)
        else:
            refused[depth] = (
                f"depth {depth} needs patches of at least {needed} px ({MIN_BOTTOM}x{MIN_BOTTOM} at the "
                f"bottom) but the patch is {patch_size}"
            )
    return DepthFit(tuple(kept), refused)


def _check_side(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 8:
        raise ConfigError(f"{name} must be an integer >= 8 pixels but got {value!r}")


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]
