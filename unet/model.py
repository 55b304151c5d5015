"""The U-Net (Ronneberger et al., 2015) with a configurable depth, norm, activation and upsampling.

The network reads like its diagram: a stem ``DoubleConv`` at full resolution, ``depth`` ``Down`` blocks
(max-pool, then ``DoubleConv`` with twice the filters), and ``depth`` ``Up`` blocks (upsample, concatenate
the skip of the same level, ``DoubleConv``), then a 1x1 convolution to one logit per class. Level ``l``
has ``base_filters * 2**l`` filters, for ``depth + 1`` levels.

Every pooling halves the size, so H and W must be multiples of ``2**depth``. With ``pad_inputs`` the
model pads its input up to the next multiple and crops the logits back, so any image size works; with
instance norm the padded size is also at least ``2 * 2**depth``, because instance norm cannot normalise
a single pixel and the bottom level would otherwise be 1x1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from unet.config import ModelConfig
from unet.errors import ConfigError
from unet.registry import look_up

MIN_DEPTH = 2
MAX_DEPTH = 6


def _group_count(channels: int) -> int:
    """Groups for ``GroupNorm``: at most 8, dividing ``channels``, at least two channels per group.

    A one-channel group is instance norm, which has nothing to normalise over at a 1x1 bottom (its output
    would be the constant bias), so groups keep two or more channels whenever ``channels >= 2``.
    """
    groups = min(8, max(1, channels // 2))
    while channels % groups:
        groups -= 1
    return groups


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "instance": lambda channels: nn.InstanceNorm2d(channels, affine=True),
    "group": lambda channels: nn.GroupNorm(_group_count(channels), channels),
    "none": lambda channels: nn.Identity(),
}

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.01, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "gelu": nn.GELU,
}

# He initialisation per activation: (nonlinearity, negative slope) for nn.init.kaiming_normal_.
# ELU and GELU have no gain of their own in torch; they behave like ReLU for positive inputs.
_INIT_GAIN: dict[str, tuple[Literal["relu", "leaky_relu"], float]] = {
    "relu": ("relu", 0.0),
    "leaky_relu": ("leaky_relu", 0.01),
    "elu": ("relu", 0.0),
    "gelu": ("relu", 0.0),
}


def _transpose_up(in_channels: int, out_channels: int) -> nn.Module:
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)


def _bilinear_up(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


# Each builder doubles H and W and maps in_channels to out_channels (half of them, in the U-Net).
UPSAMPLING: dict[str, Callable[[int, int], nn.Module]] = {
    "transpose": _transpose_up,
    "bilinear": _bilinear_up,
}


class DoubleConv(nn.Sequential):
    """(3x3 conv, norm, activation) twice: the work done at every level of the U-Net.

    The convolutions have no bias when a norm follows, since the norm's shift replaces it.
    """

    def __init__(self, in_channels: int, out_channels: int, *, norm: str, activation: str) -> None:
        make_norm = NORMS[norm]
        make_activation = ACTIVATIONS[activation]
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias),
            make_norm(out_channels),
            make_activation(),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=bias),
            make_norm(out_channels),
            make_activation(),
        )


class Down(nn.Sequential):
    """One step down the encoder: 2x2 max-pool halves H and W, then a ``DoubleConv``."""

    def __init__(self, in_channels: int, out_channels: int, *, norm: str, activation: str) -> None:
        super().__init__(
            nn.MaxPool2d(2), DoubleConv(in_channels, out_channels, norm=norm, activation=activation)
        )


class Up(nn.Module):
    """One step up the decoder: upsample, concatenate the encoder's skip of that level, ``DoubleConv``.

    The upsampling halves the channels so that the concatenation has as many from the skip as from below.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, norm: str, activation: str, upsampling: str
    ) -> None:
        super().__init__()
        self.up = UPSAMPLING[upsampling](in_channels, out_channels)
        self.conv = DoubleConv(2 * out_channels, out_channels, norm=norm, activation=activation)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net producing one logit per class and pixel.

    Args:
        in_channels: image channels.
        num_classes: 1 for binary segmentation (one logit, sigmoid), >= 2 for multi-class (softmax).
        depth: downsampling steps, 2 to 6; the network has ``depth + 1`` resolution levels.
        base_filters: filters of the first level, doubled at every level down.
        norm: a name from ``NORMS``.
        activation: a name from ``ACTIVATIONS``.
        upsampling: a name from ``UPSAMPLING``.
        pad_inputs: pad inputs whose H/W are not multiples of ``2**depth`` and crop the logits back;
            when False such inputs raise ``ConfigError`` instead.

    Raises:
        ConfigError: a number is out of range or a name is unknown.

    Shape:
        input (N, in_channels, H, W) -> logits (N, num_classes, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        depth: int = 4,
        base_filters: int = 16,
        norm: str = "batch",
        activation: str = "relu",
        upsampling: str = "transpose",
        pad_inputs: bool = True,
    ) -> None:
        super().__init__()
        _require_int(in_channels, "in_channels", low=1)
        _require_int(num_classes, "num_classes", low=1)
        _require_int(depth, "depth", low=MIN_DEPTH, high=MAX_DEPTH)
        _require_int(base_filters, "base_filters", low=1)
        look_up(NORMS, norm, what="norm")
        look_up(ACTIVATIONS, activation, what="activation")
        look_up(UPSAMPLING, upsampling, what="upsampling")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.norm = norm
        self.pad_inputs = pad_inputs

        filters = [base_filters * 2**level for level in range(depth + 1)]
        blocks = {"norm": norm, "activation": activation}
        self.stem = DoubleConv(in_channels, filters[0], **blocks)
        self.downs = nn.ModuleList(Down(filters[i], filters[i + 1], **blocks) for i in range(depth))
        self.ups = nn.ModuleList(
            Up(filters[i + 1], filters[i], upsampling=upsampling, **blocks) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(filters[0], num_classes, kernel_size=1)
        self._init_weights(activation)

    def _init_weights(self, activation: str) -> None:
        """He initialisation (fan_out) for the convolutions, unit-variance logits from the head."""
        nonlinearity, slope = _INIT_GAIN[activation]
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(module.weight, a=slope, mode="fan_out", nonlinearity=nonlinearity)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d | nn.InstanceNorm2d | nn.GroupNorm) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # No activation follows the head: fan_in with a linear gain keeps the first logits near unit
        # scale, where fan_out would make them ~sqrt(2 * channels) times larger for a one-logit head.
        nn.init.kaiming_normal_(self.head.weight, mode="fan_in", nonlinearity="linear")

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the network computes on for an input of ``height`` x ``width``.

        The next multiple of ``2**depth``, and for instance norm at least ``2 * 2**depth`` so that the
        bottom level has more than one pixel per side.
        """
        multiple = 2**self.depth
        minimum = 2 * multiple if self.norm == "instance" else multiple
        return (
            max(-(-height // multiple) * multiple, minimum),
            max(-(-width // multiple) * multiple, minimum),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x, (top, left) = self._pad(x, *self._checked_size(x))
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        logits = self.head(x)
        return logits[..., top : top + height, left : left + width]

    def _checked_size(self, x: torch.Tensor) -> tuple[int, int]:
        """The padded size for ``x``, after checking its shape against the model's settings."""
        if x.ndim != 4:
            raise ConfigError(f"input must have shape (N, C, H, W) but got {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ConfigError(
                f"input has {x.shape[1]} channels but the model was built for {self.in_channels}: "
                f"set model.in_channels={x.shape[1]} or convert the images"
            )
        height, width = x.shape[-2:]
        padded_h, padded_w = self.padded_size(height, width)
        if not self.pad_inputs and (padded_h, padded_w) != (height, width):
            multiple = 2**self.depth
            why = (
                f"is not divisible by 2**{self.depth}={multiple}"
                if height % multiple or width % multiple
                else f"leaves a 1x1 bottom at depth {self.depth}, which instance norm cannot normalise"
            )
            raise ConfigError(
                f"input height/width {height}x{width} {why}: pad to {padded_h}x{padded_w} "
                "or set pad_inputs=True"
            )
        return padded_h, padded_w

    @staticmethod
    def _pad(x: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Pad ``x`` to ``height`` x ``width``, split evenly between the sides; return it and (top, left).

        Reflection keeps image statistics at the border; it needs each pad smaller than the side it
        mirrors, so tiny inputs are padded by replicating the edge instead.
        """
        pad_h, pad_w = height - x.shape[-2], width - x.shape[-1]
        if pad_h == 0 and pad_w == 0:
            return x, (0, 0)
        top, left = pad_h // 2, pad_w // 2
        pads = (left, pad_w - left, top, pad_h - top)
        fits = max(pads[:2]) < x.shape[-1] and max(pads[2:]) < x.shape[-2]
        return F.pad(x, pads, mode="reflect" if fits else "replicate"), (top, left)


def build_model(config: ModelConfig) -> UNet:
    """The ``UNet`` that ``config`` describes."""
    return UNet(
        config.in_channels,
        config.num_classes,
        depth=config.depth,
        base_filters=config.base_filters,
        norm=config.norm,
        activation=config.activation,
        upsampling=config.upsampling,
        pad_inputs=config.pad_inputs,
    )


def _require_int(value: object, name: str, *, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"model.{name} must be an integer but got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigError(f"model.{name} must be {bounds} but got {value}")
