"""Decoding mask files into class indices, with one rule for every encoding (see ``decode_mask``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet.data.checks import check_num_classes
from unet.data.problems import DataProblem

# Largest value read as "looks like a class index" when deciding which fix an error suggests.
_CLASS_LIKE_MAX = 63
_SHOWN_VALUES = 8


def decode_mask(array: np.ndarray, *, path: Path | str, num_classes: int | None = None) -> np.ndarray:
    """Turn a stored mask into an ``(H, W)`` int64 array of class indices.

    The rule, in order:

    1. Channels: ``(H, W, C)`` masks whose channels are all equal are read from the first one; masks
       whose channels differ (colour-coded masks) are an error.
    2. Binary: values within {0, 1}, within {0, 255} or within {0, the dtype's maximum} (65535 for
       16-bit) are binary whatever ``num_classes`` says: 0 is background, the non-zero value is
       foreground, read as 1. A mask of zeros alone is an empty binary mask.
    3. Classes: any other set of values is read as class indices only when ``num_classes`` >= 2 is
       given and every value lies in ``0..num_classes-1``. Class indices are never guessed from one
       mask (it need not show every class), so {0, 1, 2} without ``num_classes`` is an error that
       names the values and asks for ``num_classes``.
    4. Anything else ({0, 128, 255}, palette gray levels {0, 38, 75}, odd 16-bit values, lossy JPEG
       values, negative or fractional values) is an error listing the values found.

    Args:
        array: the mask as read (``unet.data.images.read_mask``): ``(H, W)`` or ``(H, W, C)``.
        path: the mask's file, for error messages.
        num_classes: None or 1 for binary masks; K >= 2 to accept class indices 0..K-1.

    Returns:
        ``(H, W)`` int64 class indices: {0, 1} for binary masks, 0..K-1 for K classes.

    Raises:
        DataProblem: ``mask-channels``, ``mask-classes`` (class-like values but ``num_classes`` missing
            or too small) or ``mask-values`` (an encoding with no single reading).
        ConfigError: ``num_classes`` is not None or an integer >= 1.
    """
    num_classes = check_num_classes(num_classes)
    mask = _one_channel(np.asarray(array), path)
    values = np.unique(mask)
    if mask.dtype == np.bool_:
        return mask.astype(np.int64)
    top = np.iinfo(mask.dtype).max if np.issubdtype(mask.dtype, np.unsignedinteger) else 255
    for foreground in (1, 255, top):
        if set(values.tolist()) <= {0, foreground}:
            return (mask == foreground).astype(np.int64)
    integral = bool(np.all(np.mod(values, 1) == 0)) and values[0] >= 0
    if integral and num_classes is not None and num_classes >= 2 and values[-1] < num_classes:
        return mask.astype(np.int64)
    raise _value_problem(values, path, num_classes, class_like=integral and values[-1] <= _CLASS_LIKE_MAX)


def _one_channel(mask: np.ndarray, path: Path | str) -> np.ndarray:
    if mask.ndim == 2:
        return mask
    if mask.ndim == 3 and all(np.array_equal(mask[:, :, 0], mask[:, :, c]) for c in range(1, mask.shape[2])):
        return mask[:, :, 0]
    if mask.ndim == 3:
        raise DataProblem(
            "mask-channels",
            f"{path}: mask has {mask.shape[2]} channels that differ (a colour-coded mask?)",
            "store masks as one channel: 0/255 or 0/1 for binary, class indices 0..K-1 for K classes",
        )
    raise DataProblem(
        "mask-channels",
        f"{path}: mask has shape {mask.shape}, not (H, W)",
        "store each mask as one 2-D single-channel image",
    )


def _value_problem(
    values: np.ndarray, path: Path | str, num_classes: int | None, *, class_like: bool
) -> DataProblem:
    shown = ", ".join(str(v) if isinstance(v, int) else f"{v:g}" for v in values[:_SHOWN_VALUES].tolist())
    more = f", ... ({len(values)} distinct)" if len(values) > _SHOWN_VALUES else ""
    found = f"{path}: mask values [{shown}{more}]"
    if class_like:
        needed = int(values[-1]) + 1
        given = "no num_classes was given" if num_classes is None else f"num_classes is {num_classes}"
        return DataProblem(
            "mask-classes",
            f"{found} look like class indices but {given}",
            f"pass num_classes={needed} or more (classes 0..K-1, background included), "
            "or store binary masks as 0/255 or 0/1",
        )
    jpeg = Path(path).suffix.lower() in (".jpg", ".jpeg")
    lossy = " (JPEG is lossy: save masks as PNG or TIFF)" if jpeg else ""
    return DataProblem(
        "mask-values",
        f"{found} are not a known encoding{lossy}",
        "store binary masks as 0/255 or 0/1, or class indices 0..K-1 and pass num_classes",
    )
