"""Whole-image validation: every pixel of every validation image, at its own size, scored once.

Images go through ``unet.inference.infer_logits``, the same path as prediction: whole when they fit the
patch (the network pads them to its stride and crops back), in Gaussian-blended tiles when they are
larger. Padding therefore never reaches the metrics, and the confusion matrix counts exactly
``sum(H * W)`` pixels. Dice and IoU are ``unet.metrics.SegmentationMetrics`` over all of them; the loss
is the mean of the per-image losses.

What it costs: consecutive images of one size that fit the patch go through the network together (up
to ``unet.inference.TILE_BATCH_PIXELS`` pixels a pass; one image a pass left small images dominated by
per-call overhead), larger images' tiles are batched by ``infer_logits``; all under
``torch.inference_mode``, in the training's memory format and autocast. The network is in eval mode, so
an image's logits do not depend on the others in its pass, and the loss is still computed per image:
the score is the one-by-one score (``tests/unet/test_validation.py`` compares them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from unet.inference import TILE_BATCH_PIXELS, infer_logits
from unet.metrics import SegmentationMetrics


@dataclass(frozen=True)
class Evaluation:
    """Scores over a whole validation set."""

    loss: float  # mean over images of the criterion on the whole image
    dice: float  # mean over foreground classes
    iou: float  # mean over foreground classes
    per_class_dice: dict[int, float]  # background 0 included
    per_class_iou: dict[int, float]
    pixels: int  # pixels scored: the sum of the images' H * W
    scores: dict[str, Any]  # SegmentationMetrics.compute()'s whole result (class shares ...)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    criterion: nn.Module | None = None,
    num_classes: int,
    device: torch.device | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    autocast: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
    tta: bool = False,
) -> Evaluation:
    """Score ``model`` on every image of ``dataset`` at full size.

    Args:
        model: the network; it is put in eval mode.
        dataset: items ``(image (C, H, W), mask (H, W))`` of any size; its ``patch_size`` attribute, when
            set, is the tile side for larger images.
        criterion: the loss to report (None: loss is NaN).
        num_classes: C of the logits (1 for binary).
        device: where to compute (default: the model's device).
        memory_format: images' memory format on the device.
        autocast: context manager factory for mixed precision around the forward passes.
        tta: average over flips, as ``unet.predict`` with ``tta``.
    """
    model.eval()
    device = device if device is not None else next(model.parameters()).device
    patch_size = getattr(dataset, "patch_size", None)
    metrics = SegmentationMetrics(num_classes=num_classes)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    pixels = 0
    count = len(dataset)  # type: ignore[arg-type]
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def flush() -> None:
        nonlocal loss_sum, pixels
        if not pending:
            return
        images = torch.stack([image for image, _ in pending])
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        masks = torch.stack([mask for _, mask in pending]).to(device, non_blocking=True)
        pending.clear()
        with autocast():
            logits = infer_logits(model, images, patch_size=patch_size, tta=tta, memory_format=memory_format)
        logits = logits.float()
        if criterion is not None:
            for i in range(logits.shape[0]):  # per image: a batch's Dice loss is not the mean of its images'
                loss_sum += criterion(logits[i : i + 1], masks[i : i + 1])
        metrics.update(logits, masks)
        pixels += masks.numel()

    for index in range(count):
        image, mask = dataset[index]
        height, width = image.shape[-2:]
        whole = patch_size is None or (height <= patch_size and width <= patch_size)
        if pending and (
            not whole
            or image.shape != pending[0][0].shape
            or (len(pending) + 1) * height * width > TILE_BATCH_PIXELS
        ):
            flush()
        pending.append((image, mask))
        if not whole:
            flush()  # tiled alone: infer_logits batches its tiles
    flush()
    scores = metrics.compute()
    loss = float(loss_sum) / max(count, 1) if criterion is not None else float("nan")
    return Evaluation(
        loss=loss,
        dice=float(scores["dice"]),  # type: ignore[arg-type]
        iou=float(scores["iou"]),  # type: ignore[arg-type]
        per_class_dice=dict(scores["per_class_dice"]),  # type: ignore[arg-type]
        per_class_iou=dict(scores["per_class_iou"]),  # type: ignore[arg-type]
        pixels=pixels,
        scores=scores,
    )
