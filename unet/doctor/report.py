"""The dataset doctor's report: what a folder holds, its data plan, and findings with their fixes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from unet.data.plan import DataPlan, Fingerprint
from unet.errors import DataError

Severity = Literal["error", "warning", "info"]


@dataclass
class Finding:
    """One thing the doctor noticed."""

    severity: Severity  # error: training would fail; warning: it would run badly; info: how data is read
    code: str  # stable short name, e.g. "unpaired-image", "foreground-imbalance"
    message: str  # what was found, naming files or folders
    fix: str  # what to do about it ("" when nothing needs doing)


@dataclass
class Report:
    """What a dataset folder holds and whether training can use it."""

    root: str  # the dataset folder
    val_root: str | None = None  # the validation folder, if given
    num_classes: int | None = None  # as given: None or 1 binary, K >= 2 class indices
    counts: dict[str, int] = field(default_factory=dict)  # images, masks, pairs (val_* for val_root)
    image_sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> images, smallest first
    channels: dict[str, int] = field(default_factory=dict)  # stored layout (gray, RGB, RGBA ...) -> images
    dtypes: dict[str, int] = field(default_factory=dict)  # "uint8" -> images
    value_ranges: dict[str, list[float]] = field(default_factory=dict)  # dtype -> [min, max] over images
    mask_values: dict[str, int] = field(default_factory=dict)  # "0,255" (distinct raw values) -> masks
    foreground: dict[str, dict[str, float]] = field(default_factory=dict)  # class -> pixels/mean/min/max
    unpaired_images: list[str] = field(default_factory=list)  # image files without a mask
    unpaired_masks: list[str] = field(default_factory=list)  # mask files without an image
    unreadable: list[str] = field(default_factory=list)  # files that could not be read as images
    empty_masks: list[str] = field(default_factory=list)  # masks without any foreground
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)  # train/val -> images, classes, share
    plan: dict[str, Any] | None = None  # the data plan (unet.data.plan.DataPlan.to_dict), when readable
    # Binary masks: val Dice of predicting every pixel foreground / background (unet.chance.constant_dice)
    constant_dice: dict[str, float] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no finding is an error: training can read this data."""
        return not any(f.severity == "error" for f in self.findings)

    def raise_if_unusable(self) -> None:
        """Raise the first error finding, with its fix and where to see every finding.

        Raises:
            DataError: the data cannot be trained on.
        """
        first = next((f for f in self.findings if f.severity == "error"), None)
        if first is not None:
            raise DataError(
                f"{first.message}: {first.fix} (python -m unet.doctor {self.root} lists every finding)"
            )

    def fingerprint(self) -> Fingerprint | None:
        """The dataset summary a data plan is made from; None when no image could be read."""
        if not self.image_sizes:
            return None
        sizes: list[tuple[int, int]] = []
        for key, count in self.image_sizes.items():
            width, height = (int(v) for v in key.split("x"))
            sizes += [(height, width)] * count
        gray = set(self.channels) <= {"gray", "gray+alpha"}
        dtype = max(self.dtypes, key=lambda k: self.dtypes[k]) if self.dtypes else "uint8"
        foreground = sum(stats["pixels"] for stats in self.foreground.values())
        classes = {name: tuple(split["classes"]) for name, split in self.splits.items()}
        return Fingerprint(tuple(sizes), 1 if gray else 3, dtype, foreground, classes)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data, with ``ok``."""
        return {**dataclasses.asdict(self), "ok": self.ok}

    def format(self) -> str:
        """A human-readable multi-line summary, findings last (errors first)."""
        errors = sum(f.severity == "error" for f in self.findings)
        verdict = "usable" if self.ok else f"NOT usable ({errors} error(s))"
        lines = [f"dataset: {self.root}" + (f"  (validation: {self.val_root})" if self.val_root else "")]
        lines.append(f"  verdict:      {verdict}")
        lines.append(f"  files:        {items(self.counts)}")
        lines.append(f"  image sizes:  {len(self.image_sizes)}: {items(self.image_sizes, times=True)}")
        lines.append(f"  channels:     {items(self.channels, times=True)}")
        ranges = {k: f"{v[0]:g}..{v[1]:g}" for k, v in self.value_ranges.items()}
        lines.append(f"  dtypes:       {items(self.dtypes, times=True)}; values {items(ranges)}")
        lines.append(
            f"  mask values:  {items({f'{{{k}}}': v for k, v in self.mask_values.items()}, times=True)}"
        )
        for label, stats in self.foreground.items():
            shares = {key: percent(value) for key, value in stats.items()}
            lines.append(
                f"  class {label}:      {shares['pixels']} of pixels; per image mean {shares['mean']}, "
                f"{shares['min']} to {shares['max']}"
            )
        for name, split in self.splits.items():
            lines.append(
                f"  {name + ':':<13} {split['images']} images, foreground {percent(split['foreground'])} "
                f"of pixels, classes {split['classes'] or 'none'}"
            )
        if self.constant_dice:
            lines.append(
                f"  constant Dice: all foreground {self.constant_dice['all_foreground']:.3f}, all background "
                f"{self.constant_dice['all_background']:.3f} on the validation split (the floor to beat)"
            )
        lines.append(f"  empty masks:  {len(self.empty_masks)}")
        lines.append(f"  unpaired:     {len(self.unpaired_images)} images, {len(self.unpaired_masks)} masks")
        lines.append(f"  unreadable:   {len(self.unreadable)}")
        if self.plan is not None:
            lines.append(f"  plan:         {DataPlan.from_dict(self.plan).format()}")
        order = {"error": 0, "warning": 1, "info": 2}
        for finding in sorted(self.findings, key=lambda f: order[f.severity]):
            lines.append(f"{finding.severity.upper():8}[{finding.code}] {finding.message}")
            if finding.fix:
                lines.append(f"{'':8}fix: {finding.fix}")
        return "\n".join(lines)


def percent(share: float) -> str:
    return f"{share:.1%}" if share >= 0.01 or share == 0 else f"{share:.2%}"


def items(mapping: dict[str, Any], *, times: bool = False) -> str:
    if not mapping:
        return "-"
    return ", ".join(f"{key} x{value}" if times else f"{key} {value}" for key, value in mapping.items())
