"""Checkpoints and run folders: what a training run leaves behind, written atomically.

A checkpoint (``model.pt``) is one ``torch.save`` of plain data, so ``torch.load(weights_only=True)``
reads it without unpickling code:

    format        "unet-search checkpoint", version 1
    state_dict    the weights (CPU tensors)
    config        ``TrainConfig.to_dict()``: the model is rebuilt from it
    epoch         the epoch the weights are from (the best one by validation Dice, in ``model.pt``)
    metrics       that epoch's scores (``val_dice``, ``val_iou``, ``val_loss`` ...)
    plan          the data plan (``DataPlan.to_dict()``): the patch size prediction tiles with
    normalization how images were normalised (``{"name": "zscore"}``), applied again at prediction
    history       every epoch's record, for reference

A run folder holds ``config.yaml``, ``metrics.csv``, ``model.pt`` (the best epoch) and ``last.pt`` (the
last epoch, unless left out).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from unet.atomic import write_atomic
from unet.config import TrainConfig
from unet.data.plan import DataPlan
from unet.errors import CheckpointError, UNetError
from unet.history import EPOCH_FIELDS, EpochRecord
from unet.model import build_model

if TYPE_CHECKING:  # fit's validation imports inference, which imports this module
    from unet.fit import FitResult

FORMAT = "unet-search checkpoint"
VERSION = 1
BEST_NAME = "model.pt"
LAST_NAME = "last.pt"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model built from its config with the weights in, and what came with it."""

    model: nn.Module  # in eval mode, on the CPU
    config: TrainConfig
    epoch: int  # the epoch the weights are from
    metrics: dict[str, float]  # that epoch's scores
    plan: DataPlan | None  # the data plan; None for checkpoints of data without one
    normalization: dict[str, Any] | None  # {"name": ...}; None: images are used as given
    history: list[dict[str, Any]] = field(default_factory=list)  # every epoch's record
    path: Path | None = None  # the file it was read from


def write_metrics(path: Path, history: list[EpochRecord]) -> None:
    """The per-epoch records as CSV (``EPOCH_FIELDS`` columns), written atomically."""

    def write(f: Any) -> None:
        writer = csv.DictWriter(f, fieldnames=EPOCH_FIELDS)
        writer.writeheader()
        for record in history:
            writer.writerow(record.to_dict())

    write_atomic(path, write)


def save_checkpoint(
    path: Path,
    *,
    state_dict: Mapping[str, torch.Tensor],
    config: TrainConfig,
    epoch: int,
    metrics: dict[str, float],
    plan: DataPlan | None,
    normalization: dict[str, Any] | None,
    history: list[dict[str, Any]] | None = None,
) -> None:
    """Write one checkpoint atomically (see the module docstring for its content)."""
    state = {
        "format": FORMAT,
        "version": VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "config": config.to_dict(),
        "epoch": int(epoch),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "plan": plan.to_dict() if plan is not None else None,
        "normalization": dict(normalization) if normalization is not None else None,
        "history": list(history or []),
    }
    write_atomic(Path(path), lambda f: torch.save(state, f), binary=True)


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Read a checkpoint and build its model with the weights loaded (on the CPU, in eval mode).

    Raises:
        CheckpointError: the file is missing, unreadable, or not a checkpoint this library can rebuild;
            one line naming the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such checkpoint file: pass the model.pt written by python -m unet.train "
            "or python -m search.retrain"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"{path}: cannot be read as a checkpoint ({_one_line(error)}): it is corrupt or not a model.pt; "
            "write it again with python -m unet.train or search.retrain"
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a unet-search checkpoint (no format {FORMAT!r}): it was written by another "
            "tool or an older version; retrain with python -m unet.train or search.retrain"
        )
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {state.get('version')!r} is not {VERSION}: "
            "use the unet-search version that wrote it, or retrain"
        )
    try:
        config = TrainConfig.from_dict(state["config"])
        model = build_model(config.model)
        model.load_state_dict(state["state_dict"])
        plan = DataPlan.from_dict(state["plan"]) if state.get("plan") else None
    except (UNetError, KeyError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path}: its weights or settings do not fit this version's U-Net ({_one_line(error)}): "
            "retrain with python -m unet.train or search.retrain"
        ) from error
    model.eval()
    return Checkpoint(
        model=model,
        config=config,
        epoch=int(state["epoch"]),
        metrics=dict(state.get("metrics") or {}),
        plan=plan,
        normalization=state.get("normalization"),
        history=list(state.get("history") or []),
        path=path,
    )


def dataset_normalization(dataset: Any) -> dict[str, Any] | None:
    """The normalisation a dataset applies, as stored in checkpoints (None when it does not say)."""
    name = getattr(dataset, "normalization", None)
    return {"name": name} if isinstance(name, str) else None


def save_run(
    out: Path,
    config: TrainConfig,
    result: FitResult,
    *,
    plan: DataPlan | None = None,
    normalization: dict[str, Any] | None = None,
    keep_last: bool = True,
) -> None:
    """Write a run folder's ``metrics.csv``, ``model.pt`` (best epoch) and ``last.pt`` (last epoch).

    Without a finite validation Dice (a run that diverged in its first epoch) ``model.pt`` holds the
    last weights, so a run folder always has one.
    """
    write_metrics(out / "metrics.csv", result.history)
    history = [r.to_dict() for r in result.history]
    common: dict[str, Any] = {
        "config": config,
        "plan": plan,
        "normalization": normalization,
        "history": history,
    }
    last = result.history[-1] if result.history else None
    last_state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
    best = result.best
    if result.best_state is not None and best is not None:
        save_checkpoint(
            out / BEST_NAME, state_dict=result.best_state, epoch=best.epoch, metrics=_metrics(best), **common
        )
    else:
        epoch, metrics = (last.epoch, _metrics(last)) if last is not None else (0, {})
        save_checkpoint(out / BEST_NAME, state_dict=last_state, epoch=epoch, metrics=metrics, **common)
    if keep_last and last is not None:
        save_checkpoint(
            out / LAST_NAME, state_dict=last_state, epoch=last.epoch, metrics=_metrics(last), **common
        )


def _metrics(record: EpochRecord) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in record.to_dict().items()
        if k.startswith(("val_", "train_")) and isinstance(v, int | float) and math.isfinite(v)
    }


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())[:200]
