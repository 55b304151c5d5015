"""Masks for a folder of images: ``python -m unet.predict --model DIR/model.pt --images DIR --out DIR``.

Every image (PNG, JPEG, TIFF; any size) goes through ``unet.predict``: the checkpoint's normalisation,
whole-image tiling with its data plan's patch, optional flip test-time augmentation (``--tta``). Masks
are written as PNG named by the image's stem: 0/255 for a binary model, class indices for a multi-class
one. With ``--masks DIR`` the predictions are also scored against the masks of the same stems: Dice and
IoU per image and over all pixels of all images (the way validation scores a set), written to
``OUT/scores.csv`` and the overall line printed.

Every input (model, device, each image and mask: readable, channels, sizes) and ``--out`` are checked
before anything is written (``unet.outputs``): ``--out`` must not be ``--images`` or ``--masks``, lie
inside one or hold one, and an existing ``--out`` may hold only masks and ``scores.csv``. The outputs go
into a temporary sibling that then replaces ``--out`` whole, so a failure part way (a full disk, Ctrl-C)
leaves ``--out`` as it was.

Exit status: 0 done, 2 bad input (model file, device, folders, an image the model cannot take, a missing
or wrong-size mask, an ``--out`` that cannot be written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from unet.atomic import write_atomic
from unet.checkpoint import Checkpoint
from unet.data.files import files_by_stem
from unet.data.images import read_image, read_mask
from unet.data.masks import decode_mask
from unet.data.problems import DataProblem
from unet.device import resolve_device
from unet.errors import DataError, UNetError
from unet.inference import DEFAULT_OVERLAP, load_model, predict_logits
from unet.metrics import SegmentationMetrics
from unet.metrics import predict as classes_from_logits
from unet.outputs import check_out, staged, write_failed

SCORES_NAME = "scores.csv"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m unet.predict", description="Predict masks for a folder.")
    p.add_argument("--model", required=True, type=Path, help="model.pt from unet.train or search.retrain")
    p.add_argument("--images", required=True, type=Path, help="folder of images (PNG, JPEG, TIFF)")
    p.add_argument("--out", required=True, type=Path, help="folder for the masks (PNG, named by stem)")
    p.add_argument("--masks", type=Path, help="folder of true masks (same stems): score Dice and IoU")
    p.add_argument("--tta", action="store_true", help="average over flips (4x the compute)")
    p.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP, help="tile overlap, in [0, 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        model = load_model(args.model, device=resolve_device(args.device))
        images = _listed(args.images, "--images")
        masks = _masks_for(images, args.masks) if args.masks is not None else None
        _check_inputs(images, masks, model)
        inputs = {"--images": args.images, **({"--masks": args.masks} if args.masks is not None else {})}
        check_out(args.out, owned=_owned, inputs=inputs)
    except (UNetError, DataProblem) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    metrics = SegmentationMetrics(model.config.model.num_classes)
    rows: list[dict[str, Any]] = []
    try:
        with staged(args.out) as folder:
            for stem, path in tqdm(images.items(), unit="image", disable=args.quiet, file=sys.stderr):
                logits = predict_logits(model, read_image(path), tta=args.tta, overlap=args.overlap)
                pred = classes_from_logits(logits)[0].cpu().numpy()
                _write_mask(folder.path / f"{stem}.png", pred, binary=model.config.model.num_classes == 1)
                if masks is not None:
                    rows.append({"image": stem, **_score(logits, masks[stem], model, metrics)})
            if masks is not None:
                overall = metrics.compute()
                rows.append({"image": "overall", "pixels": "", **{k: overall[k] for k in ("dice", "iou")}})
                _write_scores(folder.path / SCORES_NAME, rows)
    except KeyboardInterrupt:
        print(f"\ninterrupted: nothing written, {args.out} is left as it was", file=sys.stderr)
        return 130
    except (UNetError, DataProblem) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {write_failed(args.out, e)}", file=sys.stderr)
        return 2
    print(f"{len(images)} mask(s) written to {args.out}")
    if masks is not None:
        print(
            f"overall Dice {overall['dice']:.4f}, IoU {overall['iou']:.4f} over {len(images)} image(s); "
            f"per image in {args.out / SCORES_NAME}"
        )
    return 0


def _owned(path: Path) -> bool:
    """Whether an entry of an existing --out is one predict writes (a mask, or the scores)."""
    return path.is_file() and (path.suffix.lower() == ".png" or path.name == SCORES_NAME)


def _listed(folder: Path, option: str) -> dict[str, Path]:
    """Stem -> image file of a folder; a missing or empty folder is an error."""
    if not folder.is_dir():
        raise DataError(f"{option} {folder}: no such folder: pass a folder of PNG, JPEG or TIFF files")
    files, duplicates, _ = files_by_stem(folder)
    if duplicates:
        raise DataError(f"{folder}: several files share a stem ({duplicates[0]}): keep one per stem")
    if not files:
        raise DataError(f"{option} {folder}: holds no PNG, JPEG or TIFF file")
    return files


def _masks_for(images: dict[str, Path], folder: Path) -> dict[str, Path]:
    masks = _listed(folder, "--masks")
    missing = sorted(images.keys() - masks.keys())
    if missing:
        raise DataError(
            f"--masks {folder}: no mask for {len(missing)} image(s) ({', '.join(missing[:3])}): "
            "add them or leave --masks out"
        )
    return masks


def _check_inputs(images: dict[str, Path], masks: dict[str, Path] | None, model: Checkpoint) -> None:
    """Every image readable and one the model can take, every mask readable and of its image's size.

    All before any output is written: a bad last file must not leave the first ones' masks behind.
    """
    wanted = model.config.model.in_channels
    classes = model.config.model.num_classes
    for stem, path in images.items():
        image = read_image(path)
        channels = image.shape[2]
        if channels != wanted and not (channels == 1 and wanted == 3):
            raise DataError(
                f"{path}: image has {channels} channel(s) but the model takes {wanted}: "
                f"convert the images to {'gray' if wanted == 1 else 'RGB'} or use a model trained on them"
            )
        if masks is not None:
            mask = decode_mask(
                read_mask(masks[stem]), path=masks[stem], num_classes=classes if classes > 1 else None
            )
            _check_size(masks[stem], mask.shape, image.shape[:2])


def _check_size(mask_path: Path, mask: tuple[int, ...], image: tuple[int, ...]) -> None:
    if tuple(mask) != tuple(image):
        raise DataError(
            f"{mask_path}: mask is {mask[1]}x{mask[0]} but its image is {image[1]}x{image[0]}: "
            "save each mask at its image's size"
        )


def _write_mask(path: Path, pred: np.ndarray, *, binary: bool) -> None:
    if binary or pred.max() < 256:
        ok, encoded = cv2.imencode(".png", (pred * (255 if binary else 1)).astype(np.uint8))
    else:  # more than 256 classes: 16-bit PNG
        ok, encoded = cv2.imencode(".png", pred.astype(np.uint16))
    if not ok:
        raise DataError(f"{path}: the mask could not be encoded as PNG")
    write_atomic(path, lambda f: f.write(encoded.tobytes()), binary=True)


def _score(
    logits: torch.Tensor, mask_path: Path, model: Checkpoint, overall: SegmentationMetrics
) -> dict[str, Any]:
    """Dice and IoU of one image, and its counts added to the overall ones."""
    classes = model.config.model.num_classes
    mask = decode_mask(read_mask(mask_path), path=mask_path, num_classes=classes if classes > 1 else None)
    _check_size(mask_path, mask.shape, tuple(logits.shape[-2:]))
    target = torch.from_numpy(mask)[None].to(logits.device)
    one = SegmentationMetrics(classes)
    one.update(logits, target)
    overall.update(logits, target)
    scores = one.compute()
    return {"dice": scores["dice"], "iou": scores["iou"], "pixels": mask.size}


def _write_scores(path: Path, rows: list[dict[str, Any]]) -> None:
    def write(f: Any) -> None:
        writer = csv.DictWriter(f, fieldnames=["image", "dice", "iou", "pixels"], lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()})

    write_atomic(path, write)
