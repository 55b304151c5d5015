"""Where a run trains and at what precision: device choice, seeding, autocast and gradient scaling.

On CUDA, ``auto`` means the current device of the process, which is the first of ``CUDA_VISIBLE_DEVICES``:
a scheduler (Ray) that gives a process GPU 3 sets that variable to ``3``, and this process then sees it as
``cuda:0``. Nothing here picks a device index by habit.
"""

from __future__ import annotations

import contextlib
import logging
import random

import numpy as np
import torch

from unet.errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; an explicit CUDA device must exist.

    ``auto`` and ``cuda`` resolve to the process's current CUDA device (the first visible one unless the
    caller chose another), with its index, so logs and results name the device that actually trains.
    """
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", torch.cuda.current_device())
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} was asked for but CUDA is not available: use device 'auto' or 'cpu'"
        )
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device {name!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from e
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {name!r} was asked for but this process sees {torch.cuda.device_count()} CUDA "
            f"device(s) (CUDA_VISIBLE_DEVICES): use device 'auto' or 'cuda'"
        )
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CPU run is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the GPU computes it natively (Ampere and later), float16 before that."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.bfloat16
    return torch.float16


class Precision:
    """Autocast and gradient scaling: mixed precision on CUDA, float32 (a no-op) on CPU.

    float16 has a narrow range, so its losses are scaled (``torch.amp.GradScaler``): a step whose scaled
    gradients overflow is skipped by the scaler and the scale lowered, which is normal under float16 and
    not a divergence (:func:`unet.epoch.train_epoch` counts such steps apart). bfloat16 has float32's
    range and needs no scaler.

    Args:
        device: the training device.
        enabled: mixed precision asked for (``TrainConfig.mixed_precision``); ignored on CPU.
        dtype: force the autocast dtype (tests and benchmarks); None chooses with :func:`amp_dtype`.
        scaler: force a gradient scaler (tests drive one on CPU); None builds one for float16 on CUDA.
    """

    def __init__(
        self,
        device: torch.device,
        *,
        enabled: bool,
        dtype: torch.dtype | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.device_type = device.type
        self.enabled = enabled and device.type == "cuda"
        self.dtype = dtype if dtype is not None else amp_dtype(device)
        if scaler is None:
            use_scaler = self.enabled and self.dtype == torch.float16
            scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.scaler = scaler

    @property
    def scaling(self) -> bool:
        """Whether losses are scaled (and overflowing steps skipped) by a gradient scaler."""
        return self.scaler.is_enabled()

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        """One line for the log, e.g. ``bfloat16 autocast`` or ``float32``."""
        if not self.enabled:
            return "float32"
        name = str(self.dtype).removeprefix("torch.")
        return f"{name} autocast" + (" with gradient scaling" if self.scaling else "")


def prepare_model(
    model: torch.nn.Module, device: torch.device, *, channels_last: bool, compile_model: bool
) -> tuple[torch.nn.Module, torch.memory_format]:
    """Move ``model`` to ``device`` in its memory format; on CUDA let cuDNN pick its fastest kernels.

    Returns:
        The model to train (compiled when asked; it shares parameters with the original) and the memory
        format batches must be given in.
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    # Module.to takes memory_format (torch documents it); torch's type stubs lack that overload.
    model = model.to(device=device, memory_format=memory_format)  # type: ignore[call-overload]
    if device.type == "cuda":
        # Patches have one size per run, so the autotuner's first-batch search is paid once.
        torch.backends.cudnn.benchmark = True
    if compile_model:
        logger.info("compiling the model with torch.compile (the first steps are slower)")
        model = torch.compile(model)  # type: ignore[assignment]
    return model, memory_format
