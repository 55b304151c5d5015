"""What a model costs: trainable parameters and the FLOPs of one forward pass (benchmarks, reports)."""

from __future__ import annotations

import math

import torch
from torch import nn

from unet.errors import ConfigError


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conv_flops(model: nn.Module, height: int, width: int) -> int:
    """Approximate FLOPs of one forward pass on one ``height`` x ``width`` image: 2 x the convolutions'
    multiply-adds.

    Counted by running a zero image through the model with hooks on ``Conv2d`` and ``ConvTranspose2d``,
    so a U-Net's padding to a multiple of ``2**depth`` is included. Biases, norms, activations, pooling
    and upsampling are left out: they are a few percent of the convolutions.
    """
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d | nn.ConvTranspose2d)  # hooked on these only
        kernel = math.prod(module.kernel_size)
        if isinstance(module, nn.ConvTranspose2d):
            # Every input pixel is scattered into out_channels x kernel outputs.
            pixels, fan = inputs[0][0, 0].numel(), module.out_channels // module.groups
            total += pixels * module.in_channels * fan * kernel
        else:
            pixels, fan = output[0, 0].numel(), module.in_channels // module.groups
            total += pixels * module.out_channels * fan * kernel

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    first = next(model.parameters())
    in_channels = _first_conv(model).in_channels
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, height, width, device=first.device, dtype=first.dtype))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return 2 * total


def _first_conv(model: nn.Module) -> nn.Conv2d:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module
    raise ConfigError(f"{type(model).__name__} has no Conv2d: conv_flops needs a convolutional model")
