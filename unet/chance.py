"""The scores of predictions that learn nothing: the floor a trained model is judged against.

Standard library only, so the report reads it without torch.
"""

from __future__ import annotations


def constant_dice(foreground_share: float) -> dict[str, float]:
    """The Dice of the two constant binary predictions on pixels of which ``foreground_share`` is foreground.

    The floor a model is judged against: on masks that are mostly foreground, predicting foreground
    everywhere scores high without learning anything. By the counts :class:`SegmentationMetrics` uses
    (``N`` pixels, share ``p``): every pixel foreground has TP = pN, FP = (1 - p)N, FN = 0, so Dice
    ``2p / (1 + p)``; every pixel background has TP = FP = 0, FN = pN, so 0 (1.0 without any foreground).

    Returns:
        ``{"all_foreground": ..., "all_background": ...}``.
    """
    p = float(foreground_share)
    return {"all_foreground": 2 * p / (1 + p), "all_background": 0.0 if p > 0 else 1.0}
