from __future__ import annotations

import math

import pytest
import torch

from unet.errors import ConfigError
from unet.loss_functions import focal_loss_with_logits, soft_dice_loss
from unet.losses import (
    BINARY_LOSSES,
    LOSSES,
    MULTICLASS_LOSSES,
    build_loss,
    losses_for,
)

LN2, LN3, LN4_3 = math.log(2), math.log(3), math.log(4 / 3)

# Binary: one image, one logit channel, 2x2. sigmoid = [[0.5, 0.75], [0.25, 0.5]], target [[1, 1], [0, 0]].
# Cross-entropy per pixel: -log 0.5, -log 0.75, -log(1 - 0.25), -log(1 - 0.5) = ln2, ln4/3, ln4/3, ln2.
BINARY_LOGITS = torch.tensor([[[[0.0, LN3], [-LN3, 0.0]]]])
BINARY_TARGET = torch.tensor([[[1, 1], [0, 0]]])
BCE = (2 * LN2 + 2 * LN4_3) / 4
# Dice: intersection 0.5 + 0.75, sum of probabilities 2, of targets 2: (2 * 1.25 + 1) / (4 + 1) = 0.7.
DICE = 1 - 0.7
# Focal (gamma 2): p_t = 0.5, 0.75, 0.75, 0.5 -> (1 - p_t)**2 * -log p_t.
FOCAL = (2 * 0.25 * LN2 + 2 * 0.0625 * LN4_3) / 4

# Three classes: one image, 1x2 pixels. softmax of the first pixel [0.25, 0.5, 0.25], of the second
# [0.5, 0.25, 0.25]; targets 1 and 2.
MULTI_LOGITS = torch.log(torch.tensor([[[[1.0, 2.0]], [[2.0, 1.0]], [[1.0, 1.0]]]]))
MULTI_TARGET = torch.tensor([[[1, 2]]])
CE = (-math.log(0.5) - math.log(0.25)) / 2
# Class 1: intersection 0.5, cardinality 0.5 + 0.25 + 1 -> (1 + 1) / (1.75 + 1) = 8/11.
# Class 2: intersection 0.25, cardinality 0.25 + 0.25 + 1 -> (0.5 + 1) / (1.5 + 1) = 0.6.
# Background (class 0: loss 1 - 1/1.75) is left out of the mean.
MULTI_DICE = ((1 - 8 / 11) + (1 - 0.6)) / 2
MULTI_FOCAL = (0.5**2 * -math.log(0.5) + 0.75**2 * -math.log(0.25)) / 2


@pytest.mark.parametrize(
    ("name", "pos_weight", "expected"),
    [
        ("bce", None, BCE),
        # pos_weight 3 triples the two foreground pixels' terms: (3 ln2 + 3 ln4/3 + ln4/3 + ln2) / 4.
        ("bce", 3.0, (4 * LN2 + 4 * LN4_3) / 4),
        ("dice", None, DICE),
        ("dice_bce", None, DICE + BCE),
        ("dice_bce", 3.0, DICE + (4 * LN2 + 4 * LN4_3) / 4),
        ("focal", None, FOCAL),
    ],
)
def test_binary_losses_hand_computed(name: str, pos_weight: float | None, expected: float) -> None:
    loss = build_loss(name, num_classes=1, pos_weight=pos_weight)
    assert loss(BINARY_LOGITS, BINARY_TARGET).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("ce", CE), ("dice", MULTI_DICE), ("dice_ce", MULTI_DICE + CE), ("focal", MULTI_FOCAL)],
)
def test_multiclass_losses_hand_computed(name: str, expected: float) -> None:
    loss = build_loss(name, num_classes=3)
    assert loss(MULTI_LOGITS, MULTI_TARGET).item() == pytest.approx(expected, rel=1e-5)


def test_pos_weight_doubles_bce_here() -> None:
    plain = build_loss("bce", num_classes=1)(BINARY_LOGITS, BINARY_TARGET)
    weighted = build_loss("bce", num_classes=1, pos_weight=3.0)(BINARY_LOGITS, BINARY_TARGET)
    # Positive and negative terms are equal here (ln2 + ln4/3 each), so weight 3 on one half doubles it.
    assert weighted.item() == pytest.approx(2 * plain.item(), rel=1e-6)


def test_focal_alpha_weighs_positives_and_negatives() -> None:
    target = BINARY_TARGET.unsqueeze(1).float()
    loss = focal_loss_with_logits(BINARY_LOGITS, target, alpha=0.25)
    expected = torch.tensor([[[[0.25 * 0.25 * LN2, 0.25 * 0.0625 * LN4_3],
                               [0.75 * 0.0625 * LN4_3, 0.75 * 0.25 * LN2]]]])  # fmt: skip
    assert torch.allclose(loss, expected, rtol=1e-5)
    # gamma 0 and no alpha is plain binary cross-entropy.
    assert focal_loss_with_logits(BINARY_LOGITS, target, gamma=0.0).mean().item() == pytest.approx(BCE)


def test_soft_dice_is_taken_over_the_whole_batch() -> None:
    # Image 1: half of a full mask found; image 2: empty mask, nothing predicted.
    probs = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    onehot = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    # Whole batch: intersection 2, cardinality 2 + 4: 1 - (4 + 1) / (6 + 1) = 2/7.
    assert soft_dice_loss(probs, onehot).tolist() == pytest.approx([2 / 7])
    # Per image (dims H, W) the empty image scores a perfect 0 on its own, and the mean would be 1/7.
    assert soft_dice_loss(probs, onehot, dims=(2, 3)).tolist() == [pytest.approx([2 / 7]), [0.0]]


@pytest.mark.parametrize(("name", "num_classes"), [("dice", 1), ("dice", 3), ("dice_bce", 1), ("dice_ce", 3)])
def test_perfect_prediction_has_no_dice_loss(name: str, num_classes: int) -> None:
    target = torch.tensor([[[0, 1, 1], [1, 0, 0]], [[0, 0, 0], [1, 1, 1]]])
    if num_classes == 1:
        logits = (target.float() * 40 - 20).unsqueeze(1)
    else:
        logits = torch.nn.functional.one_hot(target, num_classes).permute(0, 3, 1, 2).float() * 40
    loss = build_loss(name, num_classes=num_classes)(logits, target)
    assert 0 <= loss.item() < 1e-6


@pytest.mark.parametrize(
    ("name", "num_classes"), [(n, 1) for n in BINARY_LOSSES] + [(n, 3) for n in MULTICLASS_LOSSES]
)
def test_every_loss_is_a_float32_scalar_with_finite_gradients_under_autocast(
    name: str, num_classes: int
) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, num_classes, 5, 7, generator=generator, requires_grad=True)
    target = torch.randint(0, max(2, num_classes), (2, 5, 7), generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = build_loss(name, num_classes=num_classes)(logits.bfloat16(), target)
    assert loss.shape == () and loss.dtype == torch.float32 and loss.item() > 0
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and (logits.grad != 0).any()


@pytest.mark.parametrize(
    ("name", "num_classes", "pos_weight", "message"),
    [
        ("bce", 3, None, "loss 'bce' is for binary segmentation .* but num_classes=3: use 'ce' instead"),
        ("dice_bce", 2, None, "but num_classes=2: use 'dice_ce' instead"),
        ("ce", 1, None, "loss 'ce' is for num_classes >= 2 but num_classes=1: use 'bce' instead"),
        ("dice_ce", 1, None, "use 'dice_bce' instead"),
        ("dice", 1, 2.0, "loss 'dice' ignores pos_weight=2.0: remove pos_weight or use 'bce' or 'dice_bce'"),
        ("ce", 3, 2.0, "loss 'ce' ignores pos_weight=2.0"),
        ("focal", 1, 2.0, "loss 'focal' ignores pos_weight=2.0"),
        ("bce", 1, -1.0, "pos_weight must be a finite number > 0 but got -1.0"),
        ("dice_bce", 1, math.inf, "pos_weight must be a finite number > 0 but got inf"),
        ("dice", 0, None, "num_classes must be an integer >= 1 but got 0"),
        ("dise", 1, None, "unknown loss 'dise'.*Did you mean 'dice'"),
    ],
)
def test_bad_combinations_raise_config_error(
    name: str, num_classes: int, pos_weight: float | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_loss(name, num_classes=num_classes, pos_weight=pos_weight)


@pytest.mark.parametrize("num_classes", [1, 2, 5])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_for_lists_exactly_the_losses_that_build(name: str, num_classes: int) -> None:
    if name in losses_for(num_classes):
        LOSSES[name](num_classes, None)
    else:
        with pytest.raises(ConfigError):
            LOSSES[name](num_classes, None)


def test_every_registered_loss_is_listed() -> None:
    assert set(LOSSES) == set(BINARY_LOSSES) | set(MULTICLASS_LOSSES)


@pytest.mark.parametrize(
    ("name", "num_classes", "logits_shape", "target_shape"),
    [
        ("bce", 1, (2, 2, 4, 4), (2, 4, 4)),  # two logits for a binary loss
        ("ce", 3, (2, 3, 4, 4), (2, 1, 4, 4)),  # target with a channel axis
        ("dice", 1, (1, 4, 4), (1, 4, 4)),  # logits without a channel axis
    ],
)
def test_wrong_shapes_raise(
    name: str, num_classes: int, logits_shape: tuple[int, ...], target_shape: tuple[int, ...]
) -> None:
    loss = build_loss(name, num_classes=num_classes)
    with pytest.raises(ValueError, match=r"loss expects logits \(N, .*, H, W\) and target \(N, H, W\)"):
        loss(torch.zeros(logits_shape), torch.zeros(target_shape, dtype=torch.int64))
