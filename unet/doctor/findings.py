"""The doctor's findings: problems that stop training, and what would make it run or score badly."""

from __future__ import annotations

from pathlib import Path

from unet.chance import constant_dice
from unet.data.plan import DataPlan
from unet.data.problems import DataProblem, preview
from unet.data.survey import Survey
from unet.doctor.report import Finding, Report, percent

IMBALANCE_THRESHOLD = 0.05  # a class below this share of all pixels gets a loss-choice warning
# A val Dice this high for predicting every pixel foreground hides a model that learned nothing.
HIGH_CONSTANT_DICE = 0.5
# Images with both sides at most this share of the patch are "much smaller": training mirrors each into
# a patch-sized canvas, so most of what the loss sees is copies.
SMALL_IMAGE_SHARE = 0.5


def problem_findings(problems: list[tuple[DataProblem, str]], largest_class_like: int) -> list[Finding]:
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


def constant_findings(report: Report) -> list[Finding]:
    """Fill ``report.constant_dice`` from the validation split (binary masks) and warn when it is high."""
    val = report.splits.get("val")
    if (report.num_classes or 1) > 1 or not val or not val["images"]:
        return []
    report.constant_dice = constant_dice(val["foreground"])
    score = report.constant_dice["all_foreground"]
    if score < HIGH_CONSTANT_DICE:
        return []
    message = (
        f"predicting foreground everywhere scores val Dice {score:.3f} (foreground is "
        f"{percent(val['foreground'])} of the validation pixels)"
    )
    fix = (
        f"judge models against {score:.3f}, not 0: a val Dice near it means nothing was learned; if the "
        "background is the structure of interest, invert the masks"
    )
    return [Finding("warning", "high-constant-dice", message, fix)]


def data_findings(report: Report, survey: Survey) -> list[Finding]:
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
            message = f"{what} is {percent(stats['pixels'])} of pixels"
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
                "training takes patches of the plan's patch size; validation and prediction score each "
                "image whole, at its own size",
                "",
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


def _area_of(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def plan_findings(report: Report, plan: DataPlan) -> list[Finding]:
    """What would distort scores under ``plan``: tiny images, empty validation or test, one-split classes.

    The plan itself is part of the report (``Report.plan``), not a finding.
    """
    findings: list[Finding] = []
    limit = plan.patch_size * SMALL_IMAGE_SHARE
    small = {k: n for k, n in report.image_sizes.items() if max(int(v) for v in k.split("x")) <= limit}
    if small:
        count = sum(small.values())
        findings.append(
            Finding(
                "warning",
                "images-smaller-than-patch",
                f"{count} image(s) ({', '.join(small)}) are at most half the patch {plan.patch_size}: "
                "training pads each to the patch by mirroring, so copies of it fill most of the patch",
                f"leave patch_size to the plan, or set it near {_fitting(small, plan.stride)} (patch_size, "
                "--patch-size); or train images of similar size together",
            )
        )
    for name, what, fix in (
        ("val", "validation", "put images with foreground into the validation set (val_path, another seed or "
         "val_fraction)"),
        ("test", "test", "put images with foreground into the test set (another seed or test_fraction)"),
    ):  # fmt: skip
        part = report.splits.get(name)
        if part is not None and part["images"] and not part["classes"]:
            findings.append(
                Finding(
                    "warning",
                    f"{name}-without-foreground",
                    f"the {part['images']} {what} image(s) hold no foreground: a model predicting background "
                    "everywhere scores Dice 1.0",
                    fix,
                )
            )
    findings += _one_split_classes(report)
    return findings


def _one_split_classes(report: Report) -> list[Finding]:
    train, val, test = (report.splits.get(name) for name in ("train", "val", "test"))
    if train is None or val is None:
        return []
    findings = []
    only_train = sorted(set(train["classes"]) - set(val["classes"]))
    only_val = sorted(set(val["classes"]) - set(train["classes"]))
    if only_train and val["classes"]:
        findings.append(
            Finding(
                "warning",
                "class-train-only",
                f"class(es) {only_train} appear in training masks only: validation cannot score them "
                "(an absent class scores 1.0 when it is not predicted)",
                "move some images with these classes into the validation set",
            )
        )
    if only_val and val["classes"]:
        findings.append(
            Finding(
                "warning",
                "class-val-only",
                f"class(es) {only_val} appear in validation masks only: the model never learns them and "
                "they score 0",
                "move some images with these classes into the training set",
            )
        )
    if test is not None and test["classes"]:
        findings += _test_classes(set(train["classes"]), set(test["classes"]))
    return findings


def _test_classes(train: set[int], test: set[int]) -> list[Finding]:
    """Classes the held-out test split has alone (never learned) or lacks (never tested)."""
    findings = []
    if test - train:
        findings.append(
            Finding(
                "warning",
                "class-test-only",
                f"class(es) {sorted(test - train)} appear in test masks only: the model never learns them "
                "and they score 0 on the test set",
                "use another seed or test_fraction, or move images with these classes into the training set",
            )
        )
    if train - test:
        findings.append(
            Finding(
                "warning",
                "class-not-in-test",
                f"class(es) {sorted(train - test)} appear in no test mask: the test score cannot measure "
                "them (an absent class scores 1.0 when it is not predicted)",
                "use another seed or a larger test_fraction so the test set holds every class",
            )
        )
    return findings


def _fitting(sizes: dict[str, int], stride: int) -> int:
    """The longest side among ``sizes`` ("WxH" keys), rounded up to ``stride``."""
    longest = max(int(v) for key in sizes for v in key.split("x"))
    return -(-longest // stride) * stride
