"""resolve_device, Precision and prepare_model on a machine without CUDA (the CUDA path: device_check)."""

from __future__ import annotations

import pytest
import torch

from unet.device import Precision, prepare_model, resolve_device
from unet.errors import ConfigError


def test_auto_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_names_the_fix(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available: use device 'auto' or 'cpu'"):
        resolve_device(name)


def test_auto_is_the_current_visible_device(monkeypatch):
    # With CUDA_VISIBLE_DEVICES=3 (Ray's assignment) the process sees that card as its device 0.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match=r"sees 1 CUDA device\(s\)"):
        resolve_device("cuda:3")


def test_precision_is_float32_on_cpu():
    p = Precision(torch.device("cpu"), enabled=True)
    assert not p.enabled and not p.scaling and p.describe() == "float32"


@pytest.mark.parametrize(
    ("dtype", "scaled", "text"),
    [
        (torch.bfloat16, False, "bfloat16 autocast"),
        (torch.float16, True, "float16 autocast with gradient scaling"),
    ],
)
def test_precision_on_cuda_scales_only_float16(dtype, scaled, text):
    # Built for a CUDA device but never run: the choice of scaler and dtype is what is checked.
    p = Precision(
        torch.device("cuda", 0), enabled=True, dtype=dtype, scaler=torch.amp.GradScaler("cpu", enabled=scaled)
    )
    assert p.enabled and p.scaling is scaled and p.describe() == text


def test_prepare_model_channels_last_and_compile_flag():
    model = torch.nn.Conv2d(3, 4, 3)
    prepared, fmt = prepare_model(model, torch.device("cpu"), channels_last=True, compile_model=False)
    assert fmt == torch.channels_last and prepared is model
    assert model.weight.is_contiguous(memory_format=torch.channels_last)


def test_prepare_model_compiles_lazily_when_asked():
    model = torch.nn.Conv2d(3, 4, 3)
    prepared, _ = prepare_model(model, torch.device("cpu"), channels_last=False, compile_model=True)
    # torch.compile wraps without compiling (that happens on the first call, timed in bench.pipeline.measure).
    assert prepared is not model and prepared._orig_mod is model
