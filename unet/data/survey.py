"""Reading a dataset's pairs the way the folder dataset does, gathering statistics instead of raising.

The dataset doctor (``unet.doctor``) builds its report from a ``Survey``; problems are kept as the same
``DataProblem``s the dataset would raise, so the two never disagree on what is an error.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from unet.data.files import Pair
from unet.data.folder import check_same_size
from unet.data.images import as_image, read_mask, read_raw
from unet.data.masks import decode_mask
from unet.data.problems import DataProblem

# Problem codes that mean "this file cannot be used as an image at all".
READ_CODES = ("unreadable", "image-shape", "image-dtype")


class Survey:
    """Statistics and problems of the pairs added so far.

    Attributes:
        problems: ``(problem, file or folder it is about)`` in the order found.
        sizes: ``(width, height)`` -> images.
        channels: stored channel count (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) -> images.
        dtypes: stored dtype name -> images.
        ranges: dtype name -> ``[min, max]`` over the images' used channels (alpha left out).
        mask_values: distinct raw mask values (sorted tuple) -> masks.
        fractions: class -> per-image share of pixels, over the decoded masks.
        pixels: class -> pixels over the decoded masks; key -1 holds all their pixels.
        unreadable: files that could not be read as images.
        empty: masks with no foreground.
        decoded: masks decoded into class indices.
        largest_class_like: largest value of masks refused as ``mask-classes`` (-1 when none).
        per_mask: mask file -> (foreground classes present, foreground pixels, pixels), decoded masks only.
    """

    def __init__(self, num_classes: int | None) -> None:
        self.num_classes = num_classes
        self.problems: list[tuple[DataProblem, str]] = []
        self.sizes: Counter[tuple[int, int]] = Counter()
        self.channels: Counter[int] = Counter()
        self.dtypes: Counter[str] = Counter()
        self.ranges: dict[str, list[float]] = {}
        self.mask_values: Counter[tuple[float, ...]] = Counter()
        self.fractions: dict[int, list[float]] = {}
        self.pixels: Counter[int] = Counter()
        self.unreadable: list[str] = []
        self.empty: list[str] = []
        self.decoded = 0
        self.largest_class_like = -1
        self.per_mask: dict[str, tuple[tuple[int, ...], int, int]] = {}

    def add_problem(self, problem: DataProblem, where: Path | str) -> None:
        """Record a problem found outside ``add`` (folder layout, pairing, split)."""
        self.problems.append((problem, str(where)))
        if problem.code in READ_CODES:
            self.unreadable.append(str(where))

    def add(self, pair: Pair) -> None:
        """Read one pair with the dataset's readers and checks, recording statistics and problems."""
        image = self._image(pair.image)
        try:
            raw_mask = read_mask(pair.mask)
        except DataProblem as problem:
            self.add_problem(problem, pair.mask)
            return
        values = np.unique(raw_mask)
        self.mask_values[tuple(values.tolist())] += 1
        try:
            if image is not None:
                check_same_size(image.shape, raw_mask.shape, pair)
            mask = decode_mask(raw_mask, path=pair.mask, num_classes=self.num_classes)
        except DataProblem as problem:
            if problem.code == "mask-classes":
                self.largest_class_like = max(self.largest_class_like, int(values[-1]))
            self.add_problem(problem, pair.mask)
            return
        self._foreground(mask, pair)

    def foreground(self) -> dict[str, dict[str, float]]:
        """Per class: share of all pixels, and mean, min and max of the per-image shares."""
        return {
            str(label): {
                "pixels": self.pixels[label] / self.pixels[-1],
                "mean": float(np.mean(shares)),
                "min": float(np.min(shares)),
                "max": float(np.max(shares)),
            }
            for label, shares in self.fractions.items()
        }

    def _image(self, path: Path) -> np.ndarray | None:
        try:
            raw = read_raw(path)
        except DataProblem as problem:
            self.add_problem(problem, path)
            return None
        self.sizes[(raw.shape[1], raw.shape[0])] += 1
        self.channels[1 if raw.ndim == 2 else raw.shape[2]] += 1
        dtype = str(raw.dtype)
        self.dtypes[dtype] += 1
        try:
            image = as_image(raw, path)
        except DataProblem as problem:
            self.add_problem(problem, path)
            return None
        low, high = self.ranges.get(dtype, [np.inf, -np.inf])
        self.ranges[dtype] = [min(low, float(image.min())), max(high, float(image.max()))]
        return image

    def _foreground(self, mask: np.ndarray, pair: Pair) -> None:
        classes = range(1, max(self.num_classes or 1, 2))
        counts = np.bincount(mask.ravel(), minlength=max(classes) + 1)
        self.decoded += 1
        self.pixels[-1] += mask.size
        for label in classes:
            self.fractions.setdefault(label, []).append(float(counts[label]) / mask.size)
            self.pixels[label] += int(counts[label])
        if counts[0] == mask.size:
            self.empty.append(str(pair.mask))
        present = tuple(int(c) for c in np.flatnonzero(counts[1:]) + 1)
        self.per_mask[str(pair.mask)] = (present, int(mask.size - counts[0]), int(mask.size))
