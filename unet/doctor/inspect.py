"""Inspecting a dataset folder: reading every pair the way training would, and filling the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unet.config import VAL_FRACTION
from unet.data.checks import check_num_classes
from unet.data.files import FolderScan, Pair, pairing_problems, scan_folder
from unet.data.plan import DEFAULT_DEPTH, make_plan
from unet.data.problems import DataProblem, preview
from unet.data.split import Split, split_with_test
from unet.data.survey import Survey
from unet.doctor.findings import constant_findings, data_findings, plan_findings, problem_findings
from unet.doctor.report import Finding, Report
from unet.errors import ConfigError

_CHANNEL_NAMES = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}


def inspect_folder(
    root: Path | str,
    *,
    val_root: Path | str | None = None,
    num_classes: int | None = None,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = 0.0,
    seed: int = 0,
    patch_size: int | None = None,
    depth: int = DEFAULT_DEPTH,
) -> Report:
    """Check a dataset folder (and its validation folder) the way ``folder_datasets`` would read it.

    Never raises for data problems, a missing folder included: everything becomes a finding, so the
    CLI can always print a report.

    Args:
        root: the dataset folder (``images/`` and ``masks/``).
        val_root: a separate validation folder of the same layout.
        num_classes: None or 1 for binary masks; K >= 2 for masks of class indices 0..K-1.
        val_fraction: validation share split off ``root`` without ``val_root`` (as ``folder_datasets``).
        test_fraction: held-out test share split off ``root`` (0: none); the report's splits then
            include ``test``, so the one-split class warnings cover it.
        seed: seed of that split.
        patch_size: an explicit patch side for the plan (None: planned from the data).
        depth: the deepest U-Net the plan is made for.
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
    mask_files: dict[str, dict[str, str]] = {}
    for prefix, folder in folders:
        scan = _scan(folder, report, survey)
        if scan is None:
            continue
        report.counts.update({f"{prefix}images": len(scan.images), f"{prefix}masks": len(scan.masks)})
        report.counts[f"{prefix}pairs"] = len(scan.paired)
        stems[prefix] = scan.paired
        mask_files[prefix] = {stem: str(scan.masks[stem]) for stem in scan.paired}
        for stem in scan.paired:
            survey.add(Pair(stem, scan.images[stem], scan.masks[stem]))
    if "" in stems and (val_root is None or test_fraction > 0):
        try:
            _split(stems[""], val_root, val_fraction, test_fraction, seed, Path(root) / "images")
        except DataProblem as problem:
            survey.add_problem(problem, root)
        except ConfigError as error:
            report.findings.append(Finding("error", "split", str(error), "pass fractions in (0, 1)"))
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
    report.splits = _splits(
        survey,
        mask_files,
        val_root,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        root=root,
    )
    report.findings += constant_findings(report)
    fingerprint = report.fingerprint()
    if fingerprint is not None:
        try:
            plan = make_plan(fingerprint, depth=depth, patch_size=patch_size)
        except ConfigError as error:
            report.findings.append(Finding("error", "patch-size", str(error), "pass a patch size >= 8"))
        else:
            report.plan = plan.to_dict()
            report.findings += plan_findings(report, plan)
    return report


def _split(
    stems: list[str],
    val_root: Path | str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    source: Path,
) -> Split:
    """The split ``folder_datasets`` makes of the dataset folder's stems."""
    val_share = val_fraction if val_root is None else None
    return split_with_test(
        stems, val_fraction=val_share, test_fraction=test_fraction, seed=seed, source=source
    )


def _splits(
    survey: Survey,
    mask_files: dict[str, dict[str, str]],
    val_root: Path | str | None,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    root: Path | str,
) -> dict[str, dict[str, Any]]:
    """Images, foreground share and classes present in the training, validation (and test) parts."""
    own = mask_files.get("", {})
    if val_root is not None and test_fraction == 0:
        if "val_" not in mask_files:
            return {}
        parts = {"train": list(own.values()), "val": list(mask_files["val_"].values())}
    else:
        try:
            split = _split(list(own), val_root, val_fraction, test_fraction, seed, Path(root) / "images")
        except (DataProblem, ConfigError):  # reported where the split is checked (inspect_folder)
            return {}
        val = (
            list(mask_files.get("val_", {}).values()) if val_root is not None else [own[s] for s in split.val]
        )
        parts = {"train": [own[s] for s in split.train], "val": val}
        if split.test:
            parts["test"] = [own[s] for s in split.test]
    splits = {}
    for name, masks in parts.items():
        decoded = [survey.per_mask[m] for m in masks if m in survey.per_mask]
        pixels = sum(total for _, _, total in decoded)
        splits[name] = {
            "images": len(decoded),
            "foreground": sum(fg for _, fg, _ in decoded) / pixels if pixels else 0.0,
            "classes": sorted({c for present, _, _ in decoded for c in present}),
        }
    return splits


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
    report.findings = problem_findings(survey.problems, survey.largest_class_like) + report.findings
    report.findings += data_findings(report, survey)


def _area(item: tuple[tuple[int, int], int]) -> int:
    return _area_of(item[0])


def _area_of(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _values_key(values: tuple[float, ...]) -> str:
    shown = ",".join(f"{v:g}" for v in values[:8])
    return shown if len(values) <= 8 else f"{shown},... ({len(values)} values)"
