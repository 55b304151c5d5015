"""Typed training configuration: the one object ``fit()`` takes.

Numbers are checked here, when the config is made; names (loss, norm, optimizer, scheduler ...) are
checked against their registries when ``fit()`` builds the parts, before any training step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from unet.divergence import GUARD_FACTOR
from unet.errors import ConfigError

# The validation share of a dataset folder that has no validation folder of its own: the default of
# every command and of the study file (the split itself is ``unet.data.split``).
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the U-Net (see ``unet.model.UNet``)."""

    in_channels: int = 3  # image channels after loading (1 gray, 3 RGB; RGBA is reduced to RGB)
    num_classes: int = 1  # 1: binary (one logit, sigmoid); >= 2: multi-class (softmax over classes)
    depth: int = 4  # downsampling steps, 2 to 6 (depth + 1 resolution levels); H, W padded to 2**depth
    base_filters: int = 16  # filters of the first level, doubled at every level down
    norm: str = "batch"  # batch, instance, group or none
    activation: str = "relu"  # relu, leaky_relu, elu or gelu
    upsampling: str = "transpose"  # transpose (learned 2x2 transposed conv) or bilinear
    pad_inputs: bool = True  # pad H/W up to a multiple of 2**depth and crop back; False raises instead

    def __post_init__(self) -> None:
        _check_int(self.in_channels, "model.in_channels", low=1)
        _check_int(self.num_classes, "model.num_classes", low=1)
        _check_int(self.depth, "model.depth", low=2, high=6)
        _check_int(self.base_filters, "model.base_filters", low=1)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs besides the data."""

    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: str = "adam"  # adam, adamw or sgd (with Nesterov momentum 0.9)
    learning_rate: float = 1e-3  # initial learning rate
    weight_decay: float = 0.0  # L2 (adam, sgd) or decoupled (adamw) weight decay
    batch_size: int = 8  # images per step
    epochs: int = 10  # passes over the training set
    scheduler: str = "none"  # none, plateau (x0.5 after 3 flat epochs of val loss) or cosine (to 0)
    loss: str = "dice_bce"  # a name from unet.losses.LOSSES
    pos_weight: float | None = None  # BCE weight of positive pixels (binary losses only)
    seed: int = 0  # seeds weights, data order and augmentation
    device: str = "auto"  # auto (CUDA, then CPU), cpu, cuda or cuda:N
    mixed_precision: bool = True  # autocast to bfloat16/float16 on CUDA; ignored on CPU
    channels_last: bool | None = None  # None: on where measured faster (CPU and CUDA convolutions)
    compile: bool = False  # torch.compile the model: slower first steps, maybe faster after (README GPU)
    grad_clip: float | None = None  # clip the global gradient norm to this value
    # DataLoader worker processes; auto: none on CPU (measured faster), cpus - 1 (at least 1) on CUDA
    num_workers: int | str = "auto"
    cpus: int | None = None  # CPU cores this run may use (num_workers auto); None: the process's affinity
    # a train/val loss this many times the initial loss counts as diverged (unet.divergence.GUARD_FACTOR)
    divergence_factor: float = GUARD_FACTOR

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise ConfigError(f"model must be a ModelConfig but got {type(self.model).__name__}")
        _check_float(self.learning_rate, "learning_rate", low=0.0, low_open=True)
        _check_float(self.weight_decay, "weight_decay", low=0.0)
        _check_int(self.batch_size, "batch_size", low=1)
        _check_int(self.epochs, "epochs", low=1)
        _check_int(self.seed, "seed", low=0)
        if self.num_workers != "auto":
            _check_int(self.num_workers, "num_workers", low=0)
        if self.cpus is not None:
            _check_int(self.cpus, "cpus", low=1)
        if self.pos_weight is not None:
            _check_float(self.pos_weight, "pos_weight", low=0.0, low_open=True)
        if self.grad_clip is not None:
            _check_float(self.grad_clip, "grad_clip", low=0.0, low_open=True)
        _check_float(self.divergence_factor, "divergence_factor", low=1.0, low_open=True)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N but got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (for YAML/JSON), nested model settings under ``model``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config from plain data; unknown keys are an error naming them."""
        data = dict(data)
        model = data.pop("model", {}) or {}
        if isinstance(model, ModelConfig):
            model = dataclasses.asdict(model)
        _reject_unknown(model, ModelConfig, "model.")
        _reject_unknown(data, cls, "")
        return cls(model=ModelConfig(**model), **data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed; ``model`` may be a dict of model fields to change."""
        model = changes.pop("model", None)
        if isinstance(model, dict):
            model = dataclasses.replace(self.model, **model)
        if model is not None:
            changes["model"] = model
        return dataclasses.replace(self, **changes)


def _reject_unknown(data: dict[str, Any], cls: type, prefix: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown setting {prefix}{unknown[0]!r}: valid settings are "
            + ", ".join(prefix + n for n in sorted(names))
        )


def _check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer but got {value!r}")
    if low is not None and value < low:
        raise ConfigError(f"{name} must be >= {low} but got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be <= {high} but got {value}")


def _check_float(value: Any, name: str, *, low: float, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number but got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be finite but got {value}")
    if value < low or (low_open and value == low):
        raise ConfigError(f"{name} must be {'>' if low_open else '>='} {low} but got {value}")
