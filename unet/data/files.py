"""Finding the image and mask files of a dataset folder and pairing them by file stem.

Layout: ``DIR/images/<stem>.<ext>`` and ``DIR/masks/<stem>.<ext>``; an image and its mask share the stem,
not necessarily the extension (``a.jpg`` with ``a.png``). Hidden files and subfolders are skipped;
files with other extensions are ignored (and logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from unet.data.images import IMAGE_SUFFIXES
from unet.data.problems import DataProblem, preview

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pair:
    """One sample's files."""

    stem: str  # the shared file name without extension
    image: Path  # DIR/images/<stem>.<ext>
    mask: Path  # DIR/masks/<stem>.<ext>


@dataclass(frozen=True)
class FolderScan:
    """What a dataset folder holds, before any file is decoded."""

    root: Path  # the dataset folder
    images: dict[str, Path]  # stem -> image file (one file per stem)
    masks: dict[str, Path]  # stem -> mask file (one file per stem)
    duplicates: tuple[str, ...]  # "images/a.png, images/a.tif": several files with one stem
    ignored: tuple[Path, ...]  # files in images/ or masks/ whose extension is not read

    @property
    def paired(self) -> list[str]:
        """Stems with both an image and a mask, sorted."""
        return sorted(self.images.keys() & self.masks.keys())

    @property
    def unpaired_images(self) -> list[str]:
        """Stems of images without a mask, sorted."""
        return sorted(self.images.keys() - self.masks.keys())

    @property
    def unpaired_masks(self) -> list[str]:
        """Stems of masks without an image, sorted."""
        return sorted(self.masks.keys() - self.images.keys())


def scan_folder(root: Path | str) -> FolderScan:
    """List the image and mask files of a dataset folder.

    Raises:
        DataProblem: ``missing-folder`` when ``root`` is not a folder, ``missing-subfolder`` when it
            lacks ``images/`` or ``masks/``.
    """
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "folder not found"
        raise DataProblem(
            "missing-folder",
            f"{root}: {what}",
            "check the path: a dataset folder holds images/ and masks/ subfolders",
        )
    missing = [name for name in ("images", "masks") if not (root / name).is_dir()]
    if missing:
        raise DataProblem(
            "missing-subfolder",
            f"{root}: no {' or '.join(f'{name}/' for name in missing)} subfolder",
            f"put images in {root / 'images'} and masks with the same file stems in {root / 'masks'}",
        )
    images, image_duplicates, image_ignored = files_by_stem(root / "images")
    masks, mask_duplicates, mask_ignored = files_by_stem(root / "masks")
    return FolderScan(
        root=root,
        images=images,
        masks=masks,
        duplicates=(*image_duplicates, *mask_duplicates),
        ignored=(*image_ignored, *mask_ignored),
    )


def paired_files(root: Path | str) -> list[Pair]:
    """The image/mask pairs of a dataset folder, sorted by stem.

    Masks without an image are ignored with a logged warning (they cannot be trained on, and a stray
    mask is harmless); images without a mask are an error, since training would silently skip data.

    Raises:
        DataProblem: the folder layout is wrong (see ``scan_folder``), or ``duplicate-stem``,
            ``no-images``, ``unpaired-image``.
    """
    scan = scan_folder(root)
    check_pairs(scan)
    if scan.unpaired_masks:
        logger.warning(
            "%s: ignoring %d mask(s) without an image: %s",
            scan.root / "masks",
            len(scan.unpaired_masks),
            preview(scan.unpaired_masks),
        )
    if scan.ignored:
        logger.warning("%s: ignoring %d file(s) with other extensions", scan.root, len(scan.ignored))
    return [Pair(stem, scan.images[stem], scan.masks[stem]) for stem in scan.paired]


def check_pairs(scan: FolderScan) -> None:
    """Raise the first pairing problem of a scanned folder, if any (see ``pairing_problems``)."""
    problems = pairing_problems(scan)
    if problems:
        raise problems[0]


def pairing_problems(scan: FolderScan) -> list[DataProblem]:
    """Every problem that stops a scanned folder from being used: ``duplicate-stem``, ``no-images``,
    ``unpaired-image``. Masks without images are not a problem here (the dataset ignores them)."""
    problems = []
    if scan.duplicates:
        problems.append(
            DataProblem(
                "duplicate-stem",
                f"{scan.root}: several files share a stem: {preview(list(scan.duplicates), limit=3)}",
                "keep one image and one mask file per stem",
            )
        )
    if not scan.images:
        others = f" (ignored {len(scan.ignored)} other file(s))" if scan.ignored else ""
        problems.append(
            DataProblem(
                "no-images",
                f"{scan.root / 'images'}: no image files ({', '.join(IMAGE_SUFFIXES)}){others}",
                "add images, or point to the folder that holds images/ and masks/",
            )
        )
    unpaired = scan.unpaired_images
    if unpaired:
        problems.append(
            DataProblem(
                "unpaired-image",
                f"{scan.root / 'images'}: {len(unpaired)} of {len(scan.images)} images have no mask in "
                f"{scan.root / 'masks'} ({preview(unpaired)})",
                "add masks with the same file stems, or remove those images",
            )
        )
    return problems


def files_by_stem(folder: Path) -> tuple[dict[str, Path], list[str], list[Path]]:
    """Image files of one folder: ``(stem -> file, "a.png, a.tif" duplicates, files of other types)``.

    Stems held by several files are left out of the mapping (listed as duplicates); hidden files and
    subfolders are skipped.
    """
    by_stem: dict[str, list[Path]] = {}
    ignored: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(path.stem, []).append(path)
        else:
            ignored.append(path)
    duplicates = [
        ", ".join(f"{folder.name}/{p.name}" for p in paths) for paths in by_stem.values() if len(paths) > 1
    ]
    files = {stem: paths[0] for stem, paths in sorted(by_stem.items()) if len(paths) == 1}
    return files, duplicates, ignored
