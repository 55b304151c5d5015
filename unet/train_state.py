"""A training run's state at the end of an epoch, to continue it later as if it had never stopped.

``fit(..., last_state=LastState())`` lets its caller take the state of the last finished epoch after
``fit`` returned or raised from its ``on_epoch`` callback; ``fit(..., resume=state)`` trains on from the
epoch after it. On the CPU with in-process loading, the resumed run's later epochs equal an uninterrupted
run's exactly (``tests/unet/test_train_state.py``): the state holds everything the loop draws from or
carries over, namely

    epoch          the last epoch trained (the resumed run starts at ``epoch + 1``)
    model          the weights (CPU tensors)
    optimizer      the optimizer's state (moments, step counts, learning rates)
    scheduler      the learning-rate scheduler's state (``unet.optim.EpochScheduler.state_dict``)
    scaler         the float16 gradient scaler's state (empty when it is off)
    rng            Python's, NumPy's and torch's global generators (CUDA's too, where the run uses it), the
                   training loader's shuffling generator and the device augmentation's generator
    history        every epoch's record so far, with the best epoch's weights (``best_state``)
    first_loss     the first training step's loss, the reference of the divergence test
    initial_val_loss  the untrained model's validation loss

The random states are taken as the epoch ends, before ``on_epoch`` runs, so a callback must not draw from
the global generators for the continuation to be exact. DataLoader worker processes that persist from
epoch to epoch (CUDA's default) are seeded when they start, so with them the augmentation draws after a
resume differ from an uninterrupted run's (the training is still a valid continuation).

``save_train_state`` writes one ``torch.save`` of plain data, read back with ``weights_only=True``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet.atomic import write_atomic
from unet.errors import CheckpointError

FORMAT = "unet-search train state"
VERSION = 1


@dataclass
class TrainState:
    """Everything ``fit`` needs to train on after ``epoch`` exactly as it would have (module docstring)."""

    epoch: int  # the last epoch trained
    model: dict[str, torch.Tensor]  # weights, CPU
    optimizer: dict[str, Any]  # torch optimizer state_dict, tensors on the CPU
    scheduler: dict[str, Any]  # EpochScheduler.state_dict()
    scaler: dict[str, Any]  # torch.amp.GradScaler.state_dict()
    rng: dict[str, Any]  # see ``capture_rng``
    history: list[dict[str, Any]]  # EpochRecord.to_dict() of epochs 1..epoch
    best_state: dict[str, torch.Tensor] | None  # the best epoch's weights so far (FitResult.best_state)
    best_epoch: int | None
    first_loss: float | None  # the first finite training-step loss (divergence reference)
    initial_val_loss: float  # the untrained model's val loss


class LastState:
    """Hands out the state of the last epoch ``fit`` finished; pass one as ``fit(..., last_state=)``.

    ``fit`` binds it to its loop; ``take`` copies the state to the CPU when asked, so a caller that never
    asks pays only for the random states copied at each epoch's end.
    """

    def __init__(self) -> None:
        self._take: Callable[[], TrainState] | None = None

    def bind(self, take: Callable[[], TrainState]) -> None:
        """Called by ``fit`` after each epoch with a function that builds that epoch's state."""
        self._take = take

    @property
    def ready(self) -> bool:
        """Whether an epoch has finished, so that ``take`` has a state to give."""
        return self._take is not None

    def take(self) -> TrainState:
        """The state at the end of the last finished epoch.

        Raises:
            RuntimeError: no epoch has finished (check ``ready``).
        """
        if self._take is None:
            raise RuntimeError("no epoch has finished: there is no training state to take")
        return self._take()


def capture_rng(loader: torch.Generator, augment: torch.Generator | None) -> dict[str, Any]:
    """Every random state the training loop draws from, as plain data (lists, numbers, CPU tensors)."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": [version, list(internal), gauss],
        "numpy": [
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
        # Only where this run uses CUDA: asking would otherwise start a CUDA context for nothing.
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_initialized() else [],
        "loader": loader.get_state(),
        "augment": augment.get_state() if augment is not None else None,
    }


def restore_rng(rng: dict[str, Any], loader: torch.Generator, augment: torch.Generator | None) -> None:
    """Set every generator ``capture_rng`` read back to the state it read."""
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(rng["torch"])
    cuda = rng["cuda"]
    # A state from another machine's devices cannot be mapped onto these: CUDA draws then differ.
    if cuda and torch.cuda.is_initialized() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    loader.set_state(rng["loader"])
    if augment is not None and rng["augment"] is not None:
        augment.set_state(rng["augment"])


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it (nested dicts, lists, tuples) copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_cpu(v) for v in value)
    return value


def save_train_state(path: Path, state: TrainState) -> None:
    """Write ``state`` atomically as one ``torch.save`` of plain data."""
    data = {"format": FORMAT, "version": VERSION, **vars(state)}
    write_atomic(Path(path), lambda f: torch.save(data, f), binary=True)


def load_train_state(path: Path | str) -> TrainState:
    """Read a state ``save_train_state`` wrote (tensors on the CPU).

    Raises:
        CheckpointError: the file is missing, unreadable or not a train state of this version.
    """
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"{path}: no such train state file: it was swept or never written") from error
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"{path}: cannot be read as a train state ({type(error).__name__}: {error}): it is corrupt; "
            "the paused trial cannot be continued, train it again"
        ) from error
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: not a version-{VERSION} {FORMAT!r} file: it was written by another version; "
            "train the trial again"
        )
    fields = {k: v for k, v in data.items() if k not in ("format", "version")}
    return TrainState(**fields)
