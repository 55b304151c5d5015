"""The dataset doctor: checks a dataset folder the way training would read it, and reports.

It runs the same readers and checks as ``unet.data.folder_datasets`` (through ``unet.data``), but never
raises for a data problem: each becomes a finding with its fix, so one run lists every problem before
any training starts. Run it as ``python -m unet.doctor DIR [--val DIR] [--num-classes K] [--json]``;
the exit status is 0 when the folder is usable and 2 when it is not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from unet.data.checks import check_num_classes
from unet.data.files import FolderScan, Pair, pairing_problems, scan_folder
from unet.data.problems import DataProblem, preview
from unet.data.split import split_stems
from unet.data.survey import Survey
from unet.errors import ConfigError, DataError

Severity = Literal["error", "warning", "info"]

IMBALANCE_THRESHOLD = 0.05  # a class below this share of all pixels gets a loss-choice warning
_CHANNEL_NAMES = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}


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

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data, with ``ok``."""
        return {**dataclasses.asdict(self), "ok": self.ok}

    def format(self) -> str:
        """A human-readable multi-line summary, findings last (errors first)."""
        errors = sum(f.severity == "error" for f in self.findings)
        verdict = "usable" if self.ok else f"NOT usable ({errors} error(s))"
        lines = [f"dataset: {self.root}" + (f"  (validation: {self.val_root})" if self.val_root else "")]
        lines.append(f"  verdict:      {verdict}")
        lines.append(f"  files:        {_items(self.counts)}")
        lines.append(f"  image sizes:  {len(self.image_sizes)}: {_items(self.image_sizes, times=True)}")
        lines.append(f"  channels:     {_items(self.channels, times=True)}")
        ranges = {k: f"{v[0]:g}..{v[1]:g}" for k, v in self.value_ranges.items()}
        lines.append(f"  dtypes:       {_items(self.dtypes, times=True)}; values {_items(ranges)}")
        lines.append(
            f"  mask values:  {_items({f'{{{k}}}': v for k, v in self.mask_values.items()}, times=True)}"
        )
        for label, stats in self.foreground.items():
            shares = {key: _percent(value) for key, value in stats.items()}
            lines.append(
                f"  class {label}:      {shares['pixels']} of pixels; per image mean {shares['mean']}, "
                f"{shares['min']} to {shares['max']}"
            )
        lines.append(f"  empty masks:  {len(self.empty_masks)}")
        lines.append(f"  unpaired:     {len(self.unpaired_images)} images, {len(self.unpaired_masks)} masks")
        lines.append(f"  unreadable:   {len(self.unreadable)}")
        order = {"error": 0, "warning": 1, "info": 2}
        for finding in sorted(self.findings, key=lambda f: order[f.severity]):
            lines.append(f"{finding.severity.upper():8}[{finding.code}] {finding.message}")
            if finding.fix:
                lines.append(f"{'':8}fix: {finding.fix}")
        return "\n".join(lines)


def inspect_folder(
    root: Path | str, *, val_root: Path | str | None = None, num_classes: int | None = None
) -> Report:
    """Check a dataset folder (and its validation folder) the way ``folder_datasets`` would read it.

    Never raises for data problems, a missing folder included: everything becomes a finding, so the
    CLI can always print a report.

    Args:
        root: the dataset folder (``images/`` and ``masks/``).
        val_root: a separate validation folder of the same layout.
        num_classes: None or 1 for binary masks; K >= 2 for masks of class indices 0..K-1.
    """
    report = Report(str(root), None if val_root is None else str(val_root), num_classes)
    try:
        check_num_classes(num_classes)
    except ConfigError as error:
        report.findings.append(Finding("error", "num-classes", str(error), "pass an integer >= 1 or nothing"))
        return report
    survey = Survey(num_classes)
    folders = [("", Path(root))] + ([("val_", Path(val_root))] if val_root is not None else [])
    stems: dict[str, list[str]] = {}
    for prefix, folder in folders:
        scan = _scan(folder, report, survey)
        if scan is None:
            continue
        report.counts.update({f"{prefix}images": len(scan.images), f"{prefix}masks": len(scan.masks)})
        report.counts[f"{prefix}pairs"] = len(scan.paired)
        stems[prefix] = scan.paired
        for stem in scan.paired:
            survey.add(Pair(stem, scan.images[stem], scan.masks[stem]))
    if val_root is None and "" in stems and len(stems[""]) < 2:
        try:
            split_stems(stems[""], source=Path(root) / "images")
        except DataProblem as problem:
            survey.add_problem(problem, root)
    if "" in stems and "val_" in stems and set(stems[""]) & set(stems["val_"]):
        shared = sorted(set(stems[""]) & set(stems["val_"]))
        report.findings.append(
            Finding(
                "warning",
                "train-val-overlap",
                f"{len(shared)} stem(s) are in both folders ({preview(shared)})",
                "make sure the same image is not in both sets (validation would overrate the model)",
            )
        )
    _fill(report, survey)
    return report


def _scan(folder: Path, report: Report, survey: Survey) -> FolderScan | None:
    try:
        scan = scan_folder(folder)
    except DataProblem as problem:
        survey.add_problem(problem, folder)
        return None
    for pairing in pairing_problems(scan):
        survey.add_problem(pairing, folder)
    report.unpaired_images += [str(scan.images[s]) for s in scan.unpaired_images]
    report.unpaired_masks += [str(scan.masks[s]) for s in scan.unpaired_masks]
    if scan.unpaired_masks:
        report.findings.append(
            Finding(
                "warning",
                "unpaired-mask",
                f"{scan.root / 'masks'}: {len(scan.unpaired_masks)} mask(s) without an image are ignored "
                f"({preview(scan.unpaired_masks)})",
                "add their images or remove the masks",
            )
        )
    if scan.ignored:
        report.findings.append(
            Finding(
                "info",
                "ignored-files",
                f"{scan.root}: {len(scan.ignored)} file(s) with other extensions are ignored "
                f"({preview([p.name for p in scan.ignored])})",
                "convert them to PNG or TIFF if they are images or masks",
            )
        )
    return scan


def _fill(report: Report, survey: Survey) -> None:
    report.image_sizes = {f"{w}x{h}": n for (w, h), n in sorted(survey.sizes.items(), key=_area)}
    report.channels = {_CHANNEL_NAMES.get(c, f"{c} channels"): n for c, n in sorted(survey.channels.items())}
    report.dtypes = dict(sorted(survey.dtypes.items()))
    report.value_ranges = dict(sorted(survey.ranges.items()))
    report.mask_values = {_values_key(v): n for v, n in survey.mask_values.most_common()}
    report.foreground = survey.foreground()
    report.unreadable = survey.unreadable
    report.empty_masks = survey.empty
    report.findings = _problem_findings(survey.problems, survey.largest_class_like) + report.findings
    report.findings += _data_findings(report, survey)


def _problem_findings(problems: list[tuple[DataProblem, str]], largest_class_like: int) -> list[Finding]:
    """One error finding per problem code, naming the first file and how many more share the problem."""
    by_code: dict[str, list[tuple[DataProblem, str]]] = {}
    for problem, where in problems:
        by_code.setdefault(problem.code, []).append((problem, where))
    findings = []
    for code, group in by_code.items():
        first = group[0][0]
        others = [Path(where).name for _, where in group[1:]]
        more = f" (+{len(others)} more like it: {preview(others, limit=3)})" if others else ""
        fix = first.fix
        if code == "mask-classes":
            needed = largest_class_like + 1
            fix = f"pass num_classes={needed} (--num-classes {needed}) or more; binary masks: 0/255 or 0/1"
        findings.append(Finding("error", code, first.problem + more, fix))
    return findings


def _data_findings(report: Report, survey: Survey) -> list[Finding]:
    """Warnings and notes about data that can be read: mask content first, then images."""
    return _mask_findings(report, survey) + _image_findings(survey)


def _mask_findings(report: Report, survey: Survey) -> list[Finding]:
    """Absent or rare classes, empty masks, and the 0/255 encoding."""
    findings = []
    for label, stats in report.foreground.items():
        what = "foreground" if label == "1" and (report.num_classes or 1) <= 2 else f"class {label}"
        if stats["pixels"] == 0:
            fix = "check num_classes and the masks: a class without pixels cannot be learned"
            findings.append(Finding("warning", "class-absent", f"{what} appears in no mask", fix))
        elif stats["pixels"] < IMBALANCE_THRESHOLD:
            message = f"{what} is {_percent(stats['pixels'])} of pixels"
            fix = "prefer dice or focal loss (or bce with pos_weight)"
            findings.append(Finding("warning", "foreground-imbalance", message, fix))
    if report.empty_masks:
        findings.append(
            Finding(
                "warning",
                "empty-masks",
                f"{len(report.empty_masks)} of {survey.decoded} masks are empty "
                f"({preview([Path(p).name for p in report.empty_masks], limit=3)})",
                "check they are meant to be empty; if most are, drop some so batches hold foreground",
            )
        )
    if any(set(v) == {0, 255} or set(v) == {255} for v in survey.mask_values):
        findings.append(
            Finding("info", "masks-0-255", "masks stored as 0/255: read as binary (255 = foreground)", "")
        )
    return findings


def _image_findings(survey: Survey) -> list[Finding]:
    """Many sizes, 16-bit depth, mixed channel counts and alpha channels."""
    findings = []
    if len(survey.sizes) > 1:
        small, large = min(survey.sizes, key=_area_of), max(survey.sizes, key=_area_of)
        findings.append(
            Finding(
                "info",
                "image-sizes",
                f"{len(survey.sizes)} sizes from {small[0]}x{small[1]} to {large[0]}x{large[1]}: "
                "training crops patches of patch_size",
                f"patch_size <= {min(small)} needs no padding; validation scores the central patch",
            )
        )
    if "uint16" in survey.dtypes:
        high = survey.ranges["uint16"][1]
        findings.append(
            Finding(
                "info",
                "16-bit",
                f"{survey.dtypes['uint16']} image(s) are 16-bit (values up to {high:g} of 65535)",
                "zscore or minmax normalisation adapts to the range used; dtype divides by 65535",
            )
        )
    stored = set(survey.channels)
    if 1 in stored and stored - {1, 2}:
        findings.append(
            Finding(
                "info", "mixed-channels", "gray and colour images mixed: gray ones are repeated to RGB", ""
            )
        )
    if stored & {2, 4}:
        alpha = survey.channels[2] + survey.channels[4]
        findings.append(
            Finding("info", "alpha-dropped", f"{alpha} image(s) have an alpha channel: it is dropped", "")
        )
    return findings


def _area(item: tuple[tuple[int, int], int]) -> int:
    return _area_of(item[0])


def _area_of(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _values_key(values: tuple[float, ...]) -> str:
    shown = ",".join(f"{v:g}" for v in values[:8])
    return shown if len(values) <= 8 else f"{shown},... ({len(values)} values)"


def _percent(share: float) -> str:
    return f"{share:.1%}" if share >= 0.01 or share == 0 else f"{share:.2%}"


def _items(mapping: dict[str, Any], *, times: bool = False) -> str:
    if not mapping:
        return "-"
    return ", ".join(f"{key} x{value}" if times else f"{key} {value}" for key, value in mapping.items())


def main(argv: list[str] | None = None) -> int:
    """Command line: print the report of a dataset folder; exit 0 when usable, 2 when not."""
    parser = argparse.ArgumentParser(prog="python -m unet.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("root", metavar="DIR", help="dataset folder holding images/ and masks/")
    parser.add_argument("--val", metavar="DIR", help="separate validation folder of the same layout")
    parser.add_argument(
        "--num-classes", type=int, metavar="K", help="K >= 2 for masks of class indices 0..K-1"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = inspect_folder(args.root, val_root=args.val, num_classes=args.num_classes)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0 if report.ok else 2


if __name__ == "__main__":
    raise SystemExit(main())
