"""Whole-image inference: one image of any size in, logits for every one of its pixels out.

The same path serves validation (``unet.validation``), ``unet.predict`` and the ``python -m unet.predict``
command, so a model is scored the way it will be used:

- an image no larger than the patch in either side goes through the network whole; the network pads it
  to the next multiple of its stride 2**depth and crops the logits back (``unet.model.UNet``), so only
  real pixels come out;
- a larger image is cut into overlapping patch-sized tiles whose logits are blended with Gaussian
  weights (MONAI's ``sliding_window_inference``, the nnU-Net scheme: tile borders, where the network sees
  least context, count least). A side shorter than the patch keeps its own length, so MONAI never pads.

Test-time augmentation (``tta``) averages the logits of the image and its three flips (horizontal,
vertical, both), each flipped back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from unet.checkpoint import Checkpoint, load_checkpoint
from unet.data.normalization import normalize_image
from unet.errors import ConfigError
from unet.metrics import predict as classes_from_logits

# Share of a tile that overlaps its neighbour: MONAI's default; 0.5 (nnU-Net) costs about twice the tiles.
DEFAULT_OVERLAP = 0.25
# Gaussian blending weights: sigma as a share of the tile side (MONAI's and nnU-Net's 1/8).
SIGMA_SCALE = 0.125
# Pixels of the tiles run in one forward pass (256 tiles of 64 px, 16 of 256 px): few tiles per pass
# leave small patches dominated by per-call overhead (a 1040x1388 image in 64 px tiles: 4 per pass
# took 22x as long as 256 per pass on CPU).
TILE_BATCH_PIXELS = 2**20
_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))

Forward = Callable[[torch.Tensor], torch.Tensor]


@torch.inference_mode()
def infer_logits(
    model: nn.Module | Forward,
    images: torch.Tensor,
    *,
    patch_size: int | None,
    overlap: float = DEFAULT_OVERLAP,
    tta: bool = False,
    batch_size: int | None = None,
    memory_format: torch.memory_format | None = None,
) -> torch.Tensor:
    """Logits for every pixel of a batch of equally sized images.

    Args:
        model: the network (in eval mode), or any function from images to logits of the same size.
        images: ``(N, C, H, W)`` normalised images, on the model's device.
        patch_size: side of the tiles; None (or an image no larger than it) runs the whole image at once.
        overlap: share of a tile overlapping its neighbours, in [0, 1).
        tta: average over the image and its flips.
        batch_size: tiles per forward pass (None: as many as hold ``TILE_BATCH_PIXELS`` pixels).
        memory_format: the model's input format (channels_last where it trained so); None: as given.

    Shape:
        images (N, C, H, W) -> logits (N, K, H, W) float32.
    """
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap must be in [0, 1) but got {overlap}")
    flips = _FLIPS if tta else _FLIPS[:1]
    total: torch.Tensor | None = None
    for dims in flips:
        flipped = images.flip(dims) if dims else images
        logits = _tiled(
            model,
            flipped,
            patch_size=patch_size,
            overlap=overlap,
            batch_size=batch_size,
            memory_format=memory_format,
        )
        logits = logits.flip(dims) if dims else logits
        total = logits if total is None else total + logits
    assert total is not None  # flips is never empty
    return total / len(flips)


def _tiled(
    model: nn.Module | Forward,
    images: torch.Tensor,
    *,
    patch_size: int | None,
    overlap: float,
    batch_size: int | None,
    memory_format: torch.memory_format | None,
) -> torch.Tensor:
    height, width = images.shape[-2:]

    def forward(x: torch.Tensor) -> torch.Tensor:
        # Flips and MONAI's tile gathering return contiguous tensors: back to the model's format.
        x = x.contiguous(memory_format=memory_format) if memory_format is not None else x
        return model(x).float()

    if patch_size is None or (height <= patch_size and width <= patch_size):
        return forward(images)
    # Imported here: MONAI takes seconds to import, and whole-image inference never needs it.
    from monai.inferers import sliding_window_inference

    window = (min(patch_size, height), min(patch_size, width))
    tiles = batch_size if batch_size is not None else max(1, TILE_BATCH_PIXELS // (window[0] * window[1]))
    out = sliding_window_inference(
        images,
        roi_size=window,
        sw_batch_size=tiles,
        predictor=forward,
        overlap=overlap,
        mode="gaussian",
        sigma_scale=SIGMA_SCALE,
    )
    return torch.as_tensor(out).float()


def prepare_image(
    image: np.ndarray, *, in_channels: int, normalization: dict[str, Any] | None
) -> torch.Tensor:
    """An image as the model was trained on it: channels matched, normalised, ``(C, H, W)`` float32.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` in its file's intensity range (uint8, uint16 or float);
            an alpha channel (C = 2 or 4) is dropped, gray is repeated for an RGB model.
        in_channels: the model's input channels.
        normalization: ``{"name": ...}`` from the checkpoint; None uses the values as given.

    Raises:
        ConfigError: the image's channels cannot become the model's (e.g. RGB for a gray model).
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ConfigError(f"image must have shape (H, W) or (H, W, C) but got {array.shape}")
    if array.shape[2] in (2, 4):
        array = array[:, :, :-1]
    channels = array.shape[2]
    if channels == 1 and in_channels == 3:
        array = np.repeat(array, 3, axis=2)
    elif channels != in_channels:
        raise ConfigError(
            f"image has {channels} channel(s) but the model takes {in_channels}: "
            f"convert the images to {'gray' if in_channels == 1 else 'RGB'}"
        )
    values = normalize_image(array, normalization["name"] if normalization is not None else "none")
    return torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1)))


def load_model(path: str, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a ``model.pt`` for prediction: the checkpoint, its model on ``device`` in eval mode.

    Raises:
        CheckpointError: the file is missing, corrupt or not a unet-search checkpoint.
    """
    checkpoint = load_checkpoint(path)
    checkpoint.model.to(device).eval()
    return checkpoint


def predict(
    model: Checkpoint,
    image: np.ndarray,
    *,
    tta: bool = False,
    overlap: float = DEFAULT_OVERLAP,
) -> np.ndarray:
    """The mask of one image of any size: ``(H, W)`` class indices (0/1 for a binary model).

    Args:
        model: what ``load_model`` returned (it carries the normalisation and the patch size).
        image: ``(H, W)`` or ``(H, W, C)`` in its original intensity range.
        tta: average over flips.
        overlap: tile overlap for images larger than the patch.

    Raises:
        ConfigError: the image's channels do not fit the model.
    """
    return classes_from_logits(predict_logits(model, image, tta=tta, overlap=overlap))[0].cpu().numpy()


def predict_logits(
    model: Checkpoint, image: np.ndarray, *, tta: bool = False, overlap: float = DEFAULT_OVERLAP
) -> torch.Tensor:
    """The logits ``(1, K, H, W)`` of one image, the way ``predict`` computes them."""
    network = model.model
    device = next(network.parameters()).device
    tensor = prepare_image(
        image, in_channels=model.config.model.in_channels, normalization=model.normalization
    )
    patch = model.plan.patch_size if model.plan is not None else None
    return infer_logits(network.eval(), tensor[None].to(device), patch_size=patch, overlap=overlap, tta=tta)
