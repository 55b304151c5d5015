from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from unet.config import ModelConfig
from unet.cost import conv_flops, count_parameters
from unet.errors import ConfigError
from unet.model import (
    ACTIVATIONS,
    NORMS,
    UPSAMPLING,
    DoubleConv,
    UNet,
    build_model,
)


def _images(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("norm", sorted(NORMS))
@pytest.mark.parametrize("depth", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("size", [(37, 45), (16, 9)])
def test_output_has_input_size_for_every_depth_and_norm(norm: str, depth: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = UNet(1, 3, depth=depth, base_filters=2, norm=norm)
    logits = model(_images(2, 1, *size))  # training mode: instance norm would fail on a 1x1 bottom
    assert logits.shape == (2, 3, *size)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("in_channels", [1, 3, 4])
@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize("upsampling", sorted(UPSAMPLING))
def test_channels_classes_and_upsampling(in_channels: int, num_classes: int, upsampling: str) -> None:
    model = UNet(in_channels, num_classes, depth=2, base_filters=2, upsampling=upsampling)
    assert model(_images(2, in_channels, 13, 22)).shape == (2, num_classes, 13, 22)


@pytest.mark.parametrize(
    ("depth", "norm", "size", "padded"),
    [
        (4, "batch", (97, 130), (112, 144)),
        (4, "batch", (16, 32), (16, 32)),  # already a multiple: no pad
        (2, "batch", (1, 1), (4, 4)),  # too small to reflect: replicate
        (4, "instance", (16, 48), (32, 48)),  # instance norm: bottom at least 2x2
        (6, "instance", (37, 45), (128, 128)),
        (6, "group", (37, 45), (64, 64)),
    ],
)
def test_padded_size(depth: int, norm: str, size: tuple[int, int], padded: tuple[int, int]) -> None:
    model = UNet(1, 1, depth=depth, base_filters=2, norm=norm)
    assert model.padded_size(*size) == padded
    assert model(torch.ones(2, 1, *size)).shape == (2, 1, *size)


@pytest.mark.parametrize(
    ("norm", "size", "message"),
    [
        ("batch", (97, 130), "input height/width 97x130 is not divisible by 2**4=16: pad to 112x144"),
        ("batch", (32, 40), "input height/width 32x40 is not divisible by 2**4=16: pad to 32x48"),
        ("instance", (16, 16), "input height/width 16x16 leaves a 1x1 bottom at depth 4"),
    ],
)
def test_unpadded_input_of_wrong_size_raises_with_the_pad(
    norm: str, size: tuple[int, int], message: str
) -> None:
    model = UNet(3, 1, depth=4, base_filters=2, norm=norm, pad_inputs=False)
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")) as error:
        model(torch.zeros(1, 3, *size))
    assert "pad_inputs=True" in str(error.value)


def test_unpadded_input_of_right_size_works() -> None:
    model = UNet(3, 2, depth=4, base_filters=2, pad_inputs=False)
    assert model(torch.zeros(2, 3, 32, 48)).shape == (2, 2, 32, 48)


@pytest.mark.parametrize(
    ("size", "pads", "mode", "crop"),
    [
        # 6x7 -> 8x8: rows padded 1 above and 1 below, columns 0 left and 1 right, by reflection.
        ((6, 7), (0, 1, 1, 1), "reflect", (slice(1, 7), slice(0, 7))),
        # 1x2 -> 4x4: too small to reflect, so the edge is replicated; 1 above, 2 below, 1 each side.
        ((1, 2), (1, 1, 1, 2), "replicate", (slice(1, 2), slice(1, 3))),
    ],
)
def test_padding_is_split_and_cropped_back(
    size: tuple[int, int], pads: tuple[int, ...], mode: str, crop: tuple[slice, slice]
) -> None:
    torch.manual_seed(0)
    model = UNet(1, 2, depth=2, base_filters=2).eval()
    image = _images(2, 1, *size)
    padded = torch.nn.functional.pad(image, pads, mode=mode)
    assert padded.shape[-2:] == model.padded_size(*size)
    assert torch.allclose(model(image), model(padded)[..., crop[0], crop[1]], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"norm": "bach"}, "unknown norm 'bach'.*Did you mean 'batch'"),
        ({"activation": "rlu"}, "unknown activation 'rlu'.*Did you mean 'relu'"),
        ({"upsampling": "bilinar"}, "unknown upsampling 'bilinar'.*Did you mean 'bilinear'"),
        ({"depth": 1}, "model.depth must be between 2 and 6 but got 1"),
        ({"depth": 7}, "model.depth must be between 2 and 6 but got 7"),
        ({"depth": 2.0}, "model.depth must be an integer but got 2.0"),
        ({"base_filters": 0}, "model.base_filters must be >= 1 but got 0"),
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        UNet(3, 1, **kwargs)  # type: ignore[arg-type]


def test_wrong_channel_count_raises() -> None:
    with pytest.raises(ConfigError, match="input has 1 channels but the model was built for 3"):
        UNet(3, 1, depth=2, base_filters=2)(torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize(
    ("activation", "gain_squared"), [("relu", 2.0), ("leaky_relu", 2.0 / (1 + 0.01**2)), ("gelu", 2.0)]
)
def test_he_initialisation(activation: str, gain_squared: float) -> None:
    torch.manual_seed(0)
    model = UNet(3, 1, depth=2, base_filters=16, activation=activation)
    bottom = model.downs[-1][1][3]  # second 3x3 conv of the bottom DoubleConv: 64 -> 64 channels
    assert isinstance(bottom, nn.Conv2d) and bottom.weight.shape == (64, 64, 3, 3)
    fan_out = 64 * 3 * 3
    assert bottom.weight.std().item() == pytest.approx(math.sqrt(gain_squared / fan_out), rel=0.05)
    assert bottom.bias is None  # a norm follows: its shift replaces the bias
    # The head has no activation after it: unit gain on its fan-in of 16 (64 classes: 1024 weights,
    # enough for a stable estimate of the standard deviation).
    head = UNet(3, 64, depth=2, base_filters=16, activation=activation).head
    assert head.weight.std().item() == pytest.approx(math.sqrt(1 / 16), rel=0.1)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in norms)


def test_convolutions_have_bias_without_norm() -> None:
    model = UNet(3, 1, depth=2, base_filters=4, norm="none")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.bias is not None and bool((m.bias == 0).all()) for m in convs)


@pytest.mark.parametrize(("channels", "groups"), [(2, 1), (4, 2), (6, 3), (16, 8), (24, 8), (12, 6)])
def test_group_norm_keeps_two_channels_per_group(channels: int, groups: int) -> None:
    block = DoubleConv(1, channels, norm="group", activation="relu")
    assert block[1].num_groups == groups


@pytest.mark.parametrize("norm", sorted(NORMS))
@pytest.mark.parametrize("upsampling", sorted(UPSAMPLING))
def test_gradients_reach_every_parameter(norm: str, upsampling: str) -> None:
    torch.manual_seed(0)
    model = UNet(2, 3, depth=3, base_filters=4, norm=norm, upsampling=upsampling)
    logits = model(_images(2, 2, 19, 21))
    # Not logits.sum(): a constant upstream gradient is cancelled by batch norm's mean subtraction.
    (logits * _images(*logits.shape)).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and bool((parameter.grad != 0).any()), name


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_channels_last_matches_contiguous(norm: str) -> None:
    torch.manual_seed(0)
    model = UNet(3, 2, depth=3, base_filters=4, norm=norm, upsampling="bilinear").eval()
    images = _images(2, 3, 21, 30)
    expected = model(images)
    model = model.to(memory_format=torch.channels_last)
    actual = model(images.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(actual, expected, atol=1e-5)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_autocast_bfloat16(activation: str) -> None:
    torch.manual_seed(0)
    model = UNet(3, 2, depth=2, base_filters=4, activation=activation)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(_images(2, 3, 15, 17))
    assert logits.dtype == torch.bfloat16 and logits.shape == (2, 2, 15, 17)
    logits.float().square().mean().backward()
    assert torch.isfinite(model.head.weight.grad).all()


def test_build_model_uses_every_setting() -> None:
    config = ModelConfig(
        in_channels=4, num_classes=3, depth=3, base_filters=2, norm="instance", activation="elu",
        upsampling="bilinear", pad_inputs=False,
    )  # fmt: skip
    model = build_model(config)
    assert (model.in_channels, model.num_classes, model.depth, model.pad_inputs) == (4, 3, 3, False)
    assert model.stem[0].out_channels == 2
    assert isinstance(model.stem[1], nn.InstanceNorm2d) and isinstance(model.stem[2], nn.ELU)
    assert isinstance(model.ups[0].up[0], nn.Upsample)


# depth 2, base 2, 1 -> 1 channel, 4x4 input: levels 4x4 (2 filters), 2x2 (4), 1x1 (8).
# Multiply-adds per conv: output pixels x out x in x kernel (input pixels for the transposed convs).
_MACS_D2_B2 = (
    16 * 2 * 1 * 9 + 16 * 2 * 2 * 9  # stem
    + 4 * 4 * 2 * 9 + 4 * 4 * 4 * 9  # down 1
    + 1 * 8 * 4 * 9 + 1 * 8 * 8 * 9  # down 2
    + 1 * 8 * 4 * 4 + 4 * 4 * 8 * 9 + 4 * 4 * 4 * 9  # up 1: 2x2 transposed conv 8 -> 4, DoubleConv(8, 4)
    + 4 * 4 * 2 * 4 + 16 * 2 * 4 * 9 + 16 * 2 * 2 * 9  # up 0: transposed conv 4 -> 2, DoubleConv(4, 2)
    + 16 * 1 * 2  # head
)  # fmt: skip


@pytest.mark.parametrize(("size", "upsampling"), [((4, 4), "transpose"), ((3, 3), "transpose"),
                                                  ((4, 4), "bilinear")])  # fmt: skip
def test_conv_flops_hand_computed(size: tuple[int, int], upsampling: str) -> None:
    # A 3x3 image is padded to 4x4 and costs as much. The bilinear 1x1 convs happen to cost the same
    # as the 2x2 transposed ones here: 2x2 pixels x 4 x 8 and 4x4 pixels x 2 x 4.
    model = UNet(1, 1, depth=2, base_filters=2, upsampling=upsampling).train()
    assert _MACS_D2_B2 == 6336
    assert conv_flops(model, *size) == 2 * 6336
    assert model.training  # restored after the counting pass


def test_conv_flops_scale_with_pixels() -> None:
    model = UNet(3, 1, depth=3, base_filters=4)
    assert conv_flops(model, 64, 32) == 2 * conv_flops(model, 32, 32)


def test_count_parameters_hand_computed() -> None:
    # weights (+ 2 per channel for batch norm, + bias for the transposed and head convs)
    stem = 1 * 2 * 9 + 2 * 2 + 2 * 2 * 9 + 2 * 2
    down1 = 2 * 4 * 9 + 2 * 4 + 4 * 4 * 9 + 2 * 4
    down2 = 4 * 8 * 9 + 2 * 8 + 8 * 8 * 9 + 2 * 8
    up1 = 8 * 4 * 4 + 4 + 8 * 4 * 9 + 2 * 4 + 4 * 4 * 9 + 2 * 4
    up0 = 4 * 2 * 4 + 2 + 4 * 2 * 9 + 2 * 2 + 2 * 2 * 9 + 2 * 2
    head = 2 * 1 + 1
    model = UNet(1, 1, depth=2, base_filters=2)
    assert count_parameters(model) == stem + down1 + down2 + up1 + up0 + head == 1923
    model.head.requires_grad_(False)
    assert count_parameters(model) == 1920
