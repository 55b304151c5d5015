"""Masks for a folder of images: ``python -m unet.predict --model DIR/model.pt --images DIR --out DIR``.

Every image (PNG, JPEG, TIFF; any size) goes through ``unet.predict``: the checkpoint's normalisation,
whole-image tiling with its data plan's patch, optional flip test-time augmentation (``--tta``). Masks
are written as PNG named by the image's stem: 0/255 for a binary model, class indices for a multi-class
one. With ``--masks DIR`` the predictions are also scored against the masks of the same stems: Dice and
IoU per image and over all pixels of all images (the way validation scores a set), written to
``OUT/scores.csv`` and the overall line printed.

Exit status: 0 done, 2 bad input (model file, folders, an image the model cannot take, a missing mask),
130 interrupted.
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
from unet.errors import DataError, UNetError
from unet.inference import DEFAULT_OVERLAP, load_model, predict_logits
from unet.metrics import SegmentationMetrics
from unet.metrics import predict as classes_from_logits

SCORES_NAME = "scores.csv"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m unet.predict", description="Predict masks for a folder.")
    p.add_argument("--model", required=True, type=Path, help="model.pt from unet.train or search.retrain")
    p.add_argument("--images", required=True, type=Path, help="folder of images (PNG, JPEG, TIFF)")
    p.add_argument("--out", required=True, type=Path, help="folder for the masks (PNG, named by stem)")
    p.add_argument("--masks", type=Path, help="folder of true masks (same stems): score Dice and IoU")
    p.add_argument("--tta", action="store_true", help="average over flips (4x the compute)")
    p.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP, help="tile overlap, in [0, 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        model = load_model(args.model, device=_device(args.device))
        images = _listed(args.images, "--images")
        masks = _masks_for(images, args.masks) if args.masks is not None else None
        _check_channels(images, model)
    except (UNetError, DataProblem) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    metrics = SegmentationMetrics(model.config.model.num_classes)
    rows: list[dict[str, Any]] = []
    try:
        for stem, path in tqdm(images.items(), unit="image", disable=args.quiet, file=sys.stderr):
            logits = predict_logits(model, read_image(path), tta=args.tta, overlap=args.overlap)
            pred = classes_from_logits(logits)[0].cpu().numpy()
            _write_mask(args.out / f"{stem}.png", pred, binary=model.config.model.num_classes == 1)
            if masks is not None:
                rows.append({"image": stem, **_score(logits, masks[stem], model, metrics)})
    except KeyboardInterrupt:
        print(f"\ninterrupted: masks written so far are in {args.out}", file=sys.stderr)
        return 130
    except (UNetError, DataProblem) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(images)} mask(s) written to {args.out}")
    if masks is not None:
        overall = metrics.compute()
        rows.append({"image": "overall", "dice": overall["dice"], "iou": overall["iou"], "pixels": ""})
        _write_scores(args.out / SCORES_NAME, rows)
        print(
            f"overall Dice {overall['dice']:.4f}, IoU {overall['iou']:.4f} over {len(images)} image(s); "
            f"per image in {args.out / SCORES_NAME}"
        )
    return 0


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DataError(f"--device {name} was asked for but CUDA is not available: use --device cpu")
    return torch.device(name)


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


def _check_channels(images: dict[str, Path], model: Checkpoint) -> None:
    """Every image must be one the model can take, before any mask is written."""
    wanted = model.config.model.in_channels
    for path in images.values():
        channels = read_image(path).shape[2]
        if channels != wanted and not (channels == 1 and wanted == 3):
            raise DataError(
                f"{path}: image has {channels} channel(s) but the model takes {wanted}: "
                f"convert the images to {'gray' if wanted == 1 else 'RGB'} or use a model trained on them"
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
    if mask.shape != tuple(logits.shape[-2:]):
        raise DataError(
            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{logits.shape[-1]}x{logits.shape[-2]}: save each mask at its image's size"
        )
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
