"""Training into a run folder: ``fit`` with the folder kept current, for every command that trains.

``python -m unet.train`` and ``python -m search.retrain`` both train this way, so a run folder means the
same whoever wrote it: ``metrics.csv`` rewritten after every epoch (an interrupted run keeps its finished
epochs), then ``model.pt`` (the best epoch) and ``last.pt`` (``unet.checkpoint.save_run``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from unet.checkpoint import save_run, write_metrics
from unet.config import TrainConfig
from unet.data.plan import DataPlan
from unet.fit import FitResult, OnEpoch, fit
from unet.history import EpochRecord


def train_to_folder(
    out: Path,
    config: TrainConfig,
    train: Dataset,
    val: Dataset,
    *,
    plan: DataPlan | None = None,
    normalization: dict[str, Any] | None = None,
    keep_last: bool = True,
    on_epoch: OnEpoch | None = None,
) -> FitResult:
    """Train ``config`` on the data and leave the run in ``out`` (an existing folder).

    Args:
        out: the run folder.
        config, train, val: as for ``unet.fit.fit``.
        plan, normalization: stored in the checkpoints, for prediction.
        keep_last: also write ``last.pt``.
        on_epoch: called after ``metrics.csv`` holds the epoch (e.g. a progress bar); may stop the run.

    Raises:
        KeyboardInterrupt: interrupted; ``metrics.csv`` holds the finished epochs, no checkpoint is written.
        UNetError: as ``fit``.
    """
    history: list[EpochRecord] = []

    def record(epoch: EpochRecord) -> bool | None:
        history.append(epoch)
        write_metrics(out / "metrics.csv", history)
        return on_epoch(epoch) if on_epoch is not None else None

    result = fit(config, train, val, record)
    save_run(out, config, result, plan=plan, normalization=normalization, keep_last=keep_last)
    return result
