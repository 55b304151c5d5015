from __future__ import annotations

import pytest
import torch

from unet.errors import ConfigError
from unet.metrics import SegmentationMetrics, confusion_matrix, dice_from_counts, iou_from_counts


def _binary_logits(pred: list[list[int]]) -> torch.Tensor:
    """One-image, one-channel logits whose prediction (logit > 0) is ``pred``."""
    return (torch.tensor(pred, dtype=torch.float32) * 4 - 2)[None, None]


def _multiclass_logits(pred: list[list[int]], num_classes: int) -> torch.Tensor:
    """One-image logits whose argmax is ``pred``."""
    return torch.nn.functional.one_hot(torch.tensor(pred), num_classes).permute(2, 0, 1)[None].float() * 5


def _scores(num_classes: int, *batches: tuple[torch.Tensor, torch.Tensor]) -> dict:
    metrics = SegmentationMetrics(num_classes)
    for logits, target in batches:
        metrics.update(logits, target)
    return metrics.compute()


@pytest.mark.parametrize(
    ("tp", "fp", "fn", "dice", "iou"),
    [
        (1, 1, 1, 2 / 4, 1 / 3),
        (3, 0, 0, 1.0, 1.0),
        (0, 0, 0, 1.0, 1.0),  # nothing to find, nothing predicted
        (0, 5, 0, 0.0, 0.0),  # predicted, absent from the target
        (0, 0, 5, 0.0, 0.0),  # in the target, never predicted
        (3, 2, 2, 6 / 10, 3 / 7),
    ],
)
def test_scores_from_counts(tp: int, fp: int, fn: int, dice: float, iou: float) -> None:
    counts = [torch.tensor([value]) for value in (tp, fp, fn)]
    assert dice_from_counts(*counts).tolist() == pytest.approx([dice])
    assert iou_from_counts(*counts).tolist() == pytest.approx([iou])


def test_confusion_matrix_hand_computed() -> None:
    target = torch.tensor([[0, 1, 1], [2, 2, 0]])
    pred = torch.tensor([[0, 1, 2], [2, 1, 1]])
    # rows: target class, columns: predicted class
    assert confusion_matrix(pred, target, 3).tolist() == [[1, 1, 0], [0, 1, 1], [0, 1, 1]]


def test_binary_hand_computed() -> None:
    # Logit 0 at the top right is background (sigmoid 0.5 is not > 0.5).
    logits = torch.tensor([[[[2.0, 0.0], [3.0, -2.0]]]])
    target = torch.tensor([[[1, 1], [0, 0]]])
    scores = _scores(1, (logits, target))
    # Foreground: TP 1 (top left), FP 1 (bottom left), FN 1 (top right). Background: the same by symmetry.
    assert scores["dice"] == pytest.approx(0.5)
    assert scores["iou"] == pytest.approx(1 / 3)
    assert scores["per_class_dice"] == pytest.approx({0: 0.5, 1: 0.5})
    assert scores["per_class_iou"] == pytest.approx({0: 1 / 3, 1: 1 / 3})


def test_three_class_hand_computed() -> None:
    target = torch.tensor([[[0, 1, 1], [2, 2, 0]]])
    logits = _multiclass_logits([[0, 1, 2], [2, 1, 1]], 3)
    scores = _scores(3, (logits, target))
    # class 0: TP 1, FP 0, FN 1; class 1: TP 1, FP 2, FN 1; class 2: TP 1, FP 1, FN 1.
    assert scores["per_class_dice"] == pytest.approx({0: 2 / 3, 1: 2 / 5, 2: 2 / 4})
    assert scores["per_class_iou"] == pytest.approx({0: 1 / 2, 1: 1 / 4, 2: 1 / 3})
    # Background is not in the means.
    assert scores["dice"] == pytest.approx((2 / 5 + 2 / 4) / 2)
    assert scores["iou"] == pytest.approx((1 / 4 + 1 / 3) / 2)


def test_two_batches_score_like_their_concatenation_not_like_the_mean_of_batches() -> None:
    # Batch A: 4 foreground pixels, 2 found -> TP 2, FN 2, Dice 4/6.
    logits_a, target_a = _binary_logits([[1, 1], [0, 0]]), torch.tensor([[[1, 1], [1, 1]]])
    # Batch B: 1 foreground pixel found among 3 predicted -> TP 1, FP 2, Dice 2/4.
    logits_b, target_b = _binary_logits([[1, 1], [1, 0]]), torch.tensor([[[1, 0], [0, 0]]])
    accumulated = _scores(1, (logits_a, target_a), (logits_b, target_b))
    concatenated = _scores(1, (torch.cat([logits_a, logits_b]), torch.cat([target_a, target_b])))
    # Whole set: TP 3, FP 2, FN 2 -> 6/10; the mean of the batch scores would be (4/6 + 2/4) / 2.
    assert accumulated["dice"] == pytest.approx(6 / 10)
    assert accumulated["iou"] == pytest.approx(3 / 7)
    assert accumulated == concatenated
    assert accumulated["dice"] != pytest.approx((4 / 6 + 2 / 4) / 2)


def test_batch_split_does_not_matter_on_random_data() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, 9, 11, generator=generator)
    target = torch.randint(0, 4, (6, 9, 11), generator=generator)
    whole = _scores(4, (logits, target))
    split = _scores(4, *zip(logits.split([1, 2, 3]), target.split([1, 2, 3]), strict=True))
    assert split == whole


@pytest.mark.parametrize(
    ("num_classes", "logits", "target", "per_class_dice", "dice"),
    [
        # Binary, empty mask, nothing predicted: a perfect foreground score.
        (1, _binary_logits([[0, 0], [0, 0]]), [[0, 0], [0, 0]], {0: 1.0, 1: 1.0}, 1.0),
        # Binary, empty mask, one pixel predicted: foreground scores 0.
        (1, _binary_logits([[0, 1], [0, 0]]), [[0, 0], [0, 0]], {0: 6 / 7, 1: 0.0}, 0.0),
        # Binary, one pixel to find, none predicted: 0.
        (1, _binary_logits([[0, 0], [0, 0]]), [[0, 0], [1, 0]], {0: 6 / 7, 1: 0.0}, 0.0),
        # Three classes, class 2 nowhere: it scores 1.0 and counts in the mean with class 1 (perfect).
        (3, _multiclass_logits([[0, 1], [1, 0]], 3), [[0, 1], [1, 0]], {0: 1.0, 1: 1.0, 2: 1.0}, 1.0),
        # Three classes, class 2 predicted but absent: 0.0, mean with class 1 (2 TP, 0 FP, 1 FN = 4/5).
        (3, _multiclass_logits([[0, 1], [1, 2]], 3), [[0, 1], [1, 1]], {0: 1.0, 1: 4 / 5, 2: 0.0}, 0.4),
    ],
)
def test_empty_mask_rule(
    num_classes: int,
    logits: torch.Tensor,
    target: list[list[int]],
    per_class_dice: dict[int, float],
    dice: float,
) -> None:
    scores = _scores(num_classes, (logits, torch.tensor([target])))
    assert scores["per_class_dice"] == pytest.approx(per_class_dice)
    assert scores["dice"] == pytest.approx(dice)


def test_class_empty_in_one_batch_is_scored_over_the_whole_set() -> None:
    # Batch A has no foreground and predicts none; batch B finds its one pixel: the set is perfect.
    empty = (_binary_logits([[0, 0]]), torch.tensor([[[0, 0]]]))
    found = (_binary_logits([[1, 0]]), torch.tensor([[[1, 0]]]))
    assert _scores(1, empty, found)["dice"] == 1.0
    # A miss in batch A counts against the set even though batch B alone is perfect: TP 1, FP 1 -> 2/3.
    miss = (_binary_logits([[0, 1]]), torch.tensor([[[0, 0]]]))
    assert _scores(1, miss, found)["dice"] == pytest.approx(2 / 3)


def test_reset_forgets_and_compute_needs_an_update() -> None:
    metrics = SegmentationMetrics(1)
    with pytest.raises(RuntimeError, match="before any update"):
        metrics.compute()
    metrics.update(_binary_logits([[0, 1]]), torch.tensor([[[0, 0]]]))
    assert metrics.compute()["dice"] == 0.0
    metrics.reset()
    with pytest.raises(RuntimeError, match="before any update"):
        metrics.compute()
    metrics.update(_binary_logits([[1, 0]]), torch.tensor([[[1, 0]]]))
    assert metrics.compute()["dice"] == 1.0


def test_bfloat16_and_channels_last_logits() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 5, 6, generator=generator)
    target = torch.randint(0, 3, (2, 5, 6), generator=generator, dtype=torch.uint8)
    expected = _scores(3, (logits, target.long()))
    assert _scores(3, (logits.contiguous(memory_format=torch.channels_last), target)) == expected
    # bfloat16 rounding can only change pixels whose top two logits nearly tie; none do here.
    assert _scores(3, (logits.bfloat16(), target)) == expected


@pytest.mark.parametrize(
    ("num_classes", "logits_shape", "target", "error", "message"),
    [
        (1, (1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64), ValueError, r"logits \(N, 1, H, W\)"),
        (3, (1, 3, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.int64), ValueError, "target \\(N, H, W\\)"),
        (1, (1, 1, 2, 2), torch.zeros(1, 2, 2), ValueError, "integer class indices but has dtype"),
        (1, (1, 1, 2, 2), torch.full((1, 2, 2), 255), IndexError, "out of range"),
    ],
)
def test_bad_inputs_raise(
    num_classes: int, logits_shape: tuple[int, ...], target: torch.Tensor, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        SegmentationMetrics(num_classes).update(torch.zeros(logits_shape), target)


@pytest.mark.parametrize("num_classes", [0, -1, 1.0, True])
def test_num_classes_must_be_a_positive_integer(num_classes: object) -> None:
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 1"):
        SegmentationMetrics(num_classes)  # type: ignore[arg-type]
