"""The datasets of the crafted runs: synthetic and the real nuclei images, some broken on purpose.

Every dataset is built once per process and held as tensors (``SyntheticDataset`` holds any tensors),
so runs share them and no run pays for decoding. Broken variants keep the images and change one thing:
raw 0..255 intensities, masks that do not belong to their images, rare, tiny or dense foreground.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from bench.paths import DSB
from unet.data import folder_datasets, synthetic_datasets
from unet.data.synthetic import SyntheticDataset

SIZE = 32  # image side of every run

Pair = tuple[SyntheticDataset, SyntheticDataset]


def _synthetic(seed: int = 0, n_train: int = 16, n_val: int = 8, **kw: float) -> Pair:
    return synthetic_datasets(n_train=n_train, n_val=n_val, size=SIZE, seed=seed, **kw)  # type: ignore[arg-type]


def _raw(pair: Pair) -> Pair:
    """The images as an 8-bit file would hold them (0..255), without normalisation."""
    return tuple(  # type: ignore[return-value]
        SyntheticDataset((d.images * 40 + 120).clamp(0, 255).round(), d.masks, num_classes=1) for d in pair
    )


def _mismatched(pair: Pair, seed: int = 1) -> Pair:
    """Every mask moved to another image and turned 90 degrees: nothing in an image predicts its mask."""
    out = []
    for k, d in enumerate(pair):
        order = torch.randperm(len(d), generator=torch.Generator().manual_seed(seed + k))
        masks = torch.rot90(d.masks[order], 1, (1, 2)).contiguous()
        out.append(SyntheticDataset(d.images, masks, num_classes=d.num_classes))
    return out[0], out[1]


@functools.cache
def _dsb(normalization: str) -> Pair:
    """The nuclei images: a fixed 128-pixel patch of each (random for training, central for validation),
    shrunk 4x to 32 pixels (image by area, mask by its every 4th pixel) so that whole nuclei fit; the
    first 24 training and all 12 validation images of the seeded split."""
    torch.manual_seed(0)
    train, val = folder_datasets(DSB, patch_size=4 * SIZE, normalization=normalization, augment=False, seed=0)
    out = []
    for d in (train, val):
        # Validation items are whole images (fit validates on whole images): cut their central patch.
        items = [(_central(image), _central(mask)) for image, mask in (d[i] for i in range(min(len(d), 24)))]
        images = torch.nn.functional.avg_pool2d(torch.stack([image for image, _ in items]), 4)
        masks = torch.stack([mask[2::4, 2::4] for _, mask in items]).contiguous()
        out.append(SyntheticDataset(images, masks, num_classes=1))
    return out[0], out[1]


def _central(t: torch.Tensor, size: int = 4 * SIZE) -> torch.Tensor:
    """The central ``size x size`` patch of an image (C, H, W) or mask (H, W); a patch already is one."""
    h, w = t.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return t[..., top : top + size, left : left + size]


def _few(pair: Pair, n: int) -> Pair:
    train, val = pair
    return SyntheticDataset(train.images[:n], train.masks[:n], num_classes=1), val


BUILDERS: dict[str, Callable[[], Pair]] = {
    "synthetic": lambda: _synthetic(),
    "synthetic-b": lambda: _synthetic(seed=3),
    "synthetic-raw": lambda: _raw(_synthetic()),
    "synthetic-b-raw": lambda: _raw(_synthetic(seed=3)),
    "synthetic-mismatched": lambda: _mismatched(_synthetic()),
    "synthetic-b-mismatched": lambda: _mismatched(_synthetic(seed=3)),
    "synthetic-rare": lambda: _synthetic(foreground_fraction=0.01, contrast=0.2, noise=0.3),
    "synthetic-b-rare": lambda: _synthetic(seed=3, foreground_fraction=0.01, contrast=0.2, noise=0.3),
    "synthetic-sparse": lambda: _synthetic(foreground_fraction=0.02),
    # 80 % foreground with faint holes: learning the majority class alone scores high.
    "synthetic-dense": lambda: _synthetic(foreground_fraction=0.8, contrast=0.15, noise=0.3),
    "synthetic-b-noisy-few": lambda: _synthetic(seed=3, n_train=4, noise=0.6, contrast=0.3),
    "dsb": lambda: _dsb("zscore"),
    "dsb-raw": lambda: _dsb("none"),
    "dsb-mismatched": lambda: _mismatched(_dsb("zscore")),
    "dsb-few": lambda: _few(_dsb("zscore"), 3),
}


@functools.cache
def dataset(name: str) -> Pair:
    """The (train, val) pair called ``name``, built once per process."""
    return BUILDERS[name]()
