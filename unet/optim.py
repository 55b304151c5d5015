"""Optimizer and learning-rate scheduler registries."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from unet.config import TrainConfig
from unet.registry import look_up

Params = Iterable[torch.nn.Parameter]


def _adam(params: Params, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def _adamw(params: Params, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def _sgd(params: Params, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=config.learning_rate, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
    )


OPTIMIZERS: dict[str, Callable[[Params, TrainConfig], torch.optim.Optimizer]] = {
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
}


class EpochScheduler:
    """A scheduler stepped once per epoch with the epoch's validation loss (ignored where not needed).

    Args:
        step: what one epoch's step does with its validation loss.
        scheduler: the torch scheduler ``step`` drives, whose state a resumed run restores (None: stateless).
    """

    def __init__(self, step: Callable[[float], None], scheduler: Any = None) -> None:
        self._step = step
        self._scheduler = scheduler

    def step(self, val_loss: float) -> None:
        self._step(val_loss)

    def state_dict(self) -> dict[str, Any]:
        """The torch scheduler's state (empty for a stateless one), for ``unet.train_state``."""
        return dict(self._scheduler.state_dict()) if self._scheduler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self._scheduler is not None:
            self._scheduler.load_state_dict(state)


def _none(optimizer: torch.optim.Optimizer, config: TrainConfig) -> EpochScheduler:
    return EpochScheduler(lambda _loss: None)


def _plateau(optimizer: torch.optim.Optimizer, config: TrainConfig) -> EpochScheduler:
    # Halve the rate after 3 epochs without a 1% improvement of the validation loss.
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=3, threshold=0.01
    )

    def step(val_loss: float) -> None:
        # A non-finite loss would poison the scheduler's "best"; the run stops anyway.
        if val_loss == val_loss and abs(val_loss) != float("inf"):
            scheduler.step(val_loss)

    return EpochScheduler(step, scheduler)


def _cosine(optimizer: torch.optim.Optimizer, config: TrainConfig) -> EpochScheduler:
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=0.0)
    return EpochScheduler(lambda _loss: scheduler.step(), scheduler)


SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer, TrainConfig], EpochScheduler]] = {
    "none": _none,
    "plateau": _plateau,
    "cosine": _cosine,
}


def build_optimizer(params: Params, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer``."""
    return look_up(OPTIMIZERS, config.optimizer, what="optimizer")(params, config)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> EpochScheduler:
    """The per-epoch scheduler named by ``config.scheduler``."""
    return look_up(SCHEDULERS, config.scheduler, what="scheduler")(optimizer, config)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """Learning rate of the first parameter group."""
    group: dict[str, Any] = optimizer.param_groups[0]
    return float(group["lr"])
