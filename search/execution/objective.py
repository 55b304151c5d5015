"""One trial, start to end: parameters, training through ``unet.fit``, pruning, and what is recorded.

``execute_trial`` is the same for every backend: it reports every epoch (the last one included) as an
intermediate value, writes the epoch table, decides stops with ``search.pruning.stopper.TrialStopper``,
and leaves on the trial the user attributes that explain it (``search.outcome``): the stop attributes for
a stopped or failed trial, ``best_epoch`` for a scored one, and the diagnosis for every trial that trained
at least one epoch (with its advice as settings and, when unclear, its two candidate causes), judged
against the study's other trials at equal epochs as the store holds them at the trial's end;
``cpu_threads`` (the CPU threads it trained with) on every trial. The caller tells Optuna the returned
outcome. Under ``objective.folds`` all of this is fold 1's, and ``search.execution.folds`` trains the other
folds once fold 1 finished unpruned: the value is then the mean over the folds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState

from search.checkpoints.keep import CheckpointPolicy, keep_checkpoint
from search.checkpoints.paused import load_paused, remove_paused, save_paused
from search.checkpoints.store import ArtifactsError
from search.diagnosis import Peers, diagnose
from search.execution.data import StudyData
from search.execution.folds import FoldScores, run_other_folds
from search.outcome import (
    BEST_EPOCH,
    CHECKPOINT_ERROR,
    CPU_THREADS,
    DIAGNOSIS,
    DIAGNOSIS_CANDIDATES,
    DIAGNOSIS_CHANGES,
    DIAGNOSIS_SUMMARY,
    PAUSED,
    TRAIN_IMAGES,
    StopDecision,
    TrialOutcome,
    continued_from,
    paused_state,
    record_stop,
)
from search.pruning.stopper import TrialStopper
from search.spec.schema import StudySpec
from search.spec.space import build_config, flatten_settings, suggest_params
from search.store.epochs import EpochStore
from search.store.errors import StoreError
from search.store.heartbeat import HEARTBEAT_INTERVAL_S, Heartbeat, raise_if_taken
from unet.checkpoint import dataset_normalization, save_checkpoint
from unet.config import TrainConfig
from unet.errors import CheckpointError, UNetError
from unet.fit import FitResult, fit
from unet.history import EpochRecord
from unet.train_state import LastState, TrainState

logger = logging.getLogger(__name__)


@dataclass
class TrialContext:
    """What every trial of a study shares inside one worker process."""

    spec: StudySpec
    storage: optuna.storages.RDBStorage
    data: StudyData
    heartbeat_interval: float = HEARTBEAT_INTERVAL_S
    on_epoch: Callable[[optuna.Trial, EpochRecord], None] | None = None  # e.g. a progress display
    # Where the top trials keep their weights (none by default).
    checkpoints: CheckpointPolicy = field(default_factory=lambda: CheckpointPolicy(None, 0))
    epochs: EpochStore = field(init=False)

    def __post_init__(self) -> None:
        self.epochs = EpochStore(self.storage.engine)

    @property
    def pausing(self) -> bool:
        """Whether the cross-trial rule pauses (``pruning.cross_trial.pause``) and states have a place to go
        (the study's artifact store, ``artifacts``); without a place every stop is final."""
        return self.spec.pruning.cross_trial.pause and self.checkpoints.enabled


class _Stop(Exception):
    """Raised inside ``fit``'s callback to end a trial the pruner stopped."""

    def __init__(self, decision: StopDecision) -> None:
        super().__init__(decision.message)
        self.decision = decision


def make_stopper(
    spec: StudySpec, *, pause: bool | None = None, earlier_val_losses: Sequence[float] = ()
) -> TrialStopper:
    """The per-trial stopper the spec's pruning section describes.

    Args:
        pause: overrides ``pruning.cross_trial.pause`` (off where paused states have no place to go).
        earlier_val_losses: the val losses of the epochs a continuation continues after (its stopper
            judges from the next one).
    """
    cross_trial = spec.pruning.cross_trial.to_rule()
    if pause is not None:
        cross_trial = dataclasses.replace(cross_trial, pause=pause)
    return TrialStopper(
        plateau=spec.pruning.plateau.to_rule(),
        cross_trial=cross_trial,
        earlier_val_losses=earlier_val_losses,
        max_epochs=spec.budget.max_epochs,
    )


def execute_trial(ctx: TrialContext, trial: optuna.Trial) -> TrialOutcome:
    """Train one trial and record everything about it; interrupts are recorded, then re-raised.

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM arrived; the trial is marked ``interrupted`` first.
        UpdateFinishedTrialError: another process finished the trial while it trained here (a reaper
            that took this worker for lost); nothing more was written to it.
    """
    spec, data = ctx.spec, ctx.data
    params = suggest_params(trial, spec.space)
    trial.set_user_attr(TRAIN_IMAGES, len(data.train))  # images per epoch, for the compute in reports
    # CPU sums split over another number of threads differ in their last digits, and training amplifies
    # that: search.retrain uses this count to repeat the trial exactly.
    trial.set_user_attr(CPU_THREADS, torch.get_num_threads())
    history: list[EpochRecord] = []  # a continuation's starts with the epochs it continues after
    stopper = make_stopper(spec, pause=ctx.pausing)
    settings: dict[str, Any] = dict(params)  # every setting once the config is built, for the diagnosis
    origin = continued_from(trial.user_attrs)
    last_state = LastState() if ctx.pausing else None

    def on_epoch(record: EpochRecord) -> None:
        history.append(record)
        raise_if_taken(ctx.storage.engine, trial)  # e.g. reaped while this worker was paused
        ctx.epochs.record_epoch(spec.name, trial._trial_id, trial.number, record.to_dict())
        if ctx.on_epoch is not None:
            ctx.on_epoch(trial, record)
        decision = stopper.after_epoch(trial, record.epoch, record.val_loss, record.val_dice)
        if decision is not None:
            raise _Stop(decision)

    try:
        config = build_config(spec, params, in_channels=data.in_channels, num_classes=data.num_classes)
        settings = flatten_settings(config.to_dict())
        resume = _paused_state(ctx, origin) if origin is not None else None
        if resume is not None:
            history.extend(EpochRecord(**r) for r in resume.history)
            stopper = make_stopper(spec, pause=ctx.pausing, earlier_val_losses=[r.val_loss for r in history])
        with Heartbeat(ctx.storage, spec.name, trial._trial_id, interval=ctx.heartbeat_interval):
            result = fit(config, data.train, data.val, on_epoch, resume=resume, last_state=last_state)
            folds = _other_folds(ctx, trial, config, result)
    except _Stop as stop:
        if stop.decision.reason == PAUSED and last_state is not None:
            outcome = _pause(ctx, trial, stop.decision, last_state, history[-1])
        else:
            outcome = _stopped(trial, stop.decision)
    except KeyboardInterrupt:
        done = len(history)
        record_stop(
            trial.set_user_attr,
            StopDecision("interrupted", done, {"epochs_done": done}, f"interrupted after {done} epoch(s)"),
        )
        _record_diagnosis(trial, history, settings, peers=_peers(ctx, trial))
        raise
    except (torch.cuda.OutOfMemoryError, MemoryError) as e:
        outcome = _out_of_memory(trial, history, params, e)
    except RuntimeError as e:
        if "out of memory" not in str(e) and "can't allocate memory" not in str(e):
            raise
        outcome = _out_of_memory(trial, history, params, e)
    except UNetError as e:
        record_stop(trial.set_user_attr, StopDecision("error", len(history), {"error": str(e)}, str(e)))
        outcome = TrialOutcome(TrialState.FAIL, reason="error", message=str(e))
    else:
        if result.stop_reason == "diverged":
            last = history[-1].epoch if history else 0
            outcome = _stopped(
                trial,
                StopDecision(
                    "diverged", last, {"fit": result.stop_message or ""}, result.stop_message or "diverged"
                ),
            )
        elif folds is not None and folds.diverged is not None:
            folds.record(trial.set_user_attr)
            outcome = _stopped(trial, folds.diverged)
        else:
            best = result.best
            value = best.val_dice if best is not None else 0.0
            message = f"val Dice {value:.4f} at epoch {best.epoch if best else 0}"
            if folds is not None:
                folds.record(trial.set_user_attr)
                value = folds.mean
                message = f"val Dice {value:.4f} (mean of {len(folds.values)} folds)"
            trial.set_user_attr(BEST_EPOCH, best.epoch if best is not None else 0)
            if best is not None and result.best_state is not None:
                _keep_checkpoint(ctx, trial, config, best, result.best_state, value=value)
            outcome = TrialOutcome(TrialState.COMPLETE, value=value, message=message)
    _record_diagnosis(trial, history, settings, outcome.reason, peers=_peers(ctx, trial) if history else None)
    if origin is not None:
        _release_paused(ctx, origin)
    return outcome


def _paused_state(ctx: TrialContext, origin: int) -> TrainState:
    """The state the paused trial ``origin`` left, for its continuation.

    Raises:
        CheckpointError: it has none, or the file is gone (swept) or unreadable: the continuation fails.
    """
    study_id = ctx.storage.get_study_id_from_name(ctx.spec.name)
    paused = ctx.storage.get_trial(ctx.storage.get_trial_id_from_study_id_trial_number(study_id, origin))
    artifact_id = paused_state(paused.user_attrs)
    if artifact_id is None or ctx.checkpoints.location is None:
        raise CheckpointError(f"trial {origin} left no paused state to continue from")
    try:
        return load_paused(ctx.checkpoints.location, ctx.spec.name, artifact_id)
    except ArtifactNotFound as e:
        raise CheckpointError(
            f"trial {origin}'s paused state {artifact_id} is gone from the artifact store (swept when the "
            f"study's budget was spent) or lost: it cannot be continued"
        ) from e


def _pause(
    ctx: TrialContext, trial: optuna.Trial, decision: StopDecision, last: LastState, record: EpochRecord
) -> TrialOutcome:
    """Keep the trial's last epoch's state for a continuation; a state that cannot be kept, or an epoch
    whose training loss was not finite (``fit`` would call it diverged), makes the stop final
    (``underperforming``)."""
    assert ctx.checkpoints.location is not None  # ctx.pausing
    if not math.isfinite(record.train_loss):
        message = f"{decision.message}; its training loss was {record.train_loss}: the stop is final"
        return _stopped(trial, dataclasses.replace(decision, reason="underperforming", message=message))
    try:
        save_paused(ctx.storage, ctx.checkpoints.location, ctx.spec.name, trial, last.take())
    except (OSError, ArtifactsError) as e:
        logger.warning("trial %d: its state could not be kept, so its stop is final: %s", trial.number, e)
        message = f"{decision.message}; its state could not be kept ({str(e)[:200]}): the stop is final"
        decision = dataclasses.replace(decision, reason="underperforming", message=message)
    return _stopped(trial, decision)


def _release_paused(ctx: TrialContext, origin: int) -> None:
    """Remove the paused state a continuation trained on from: it is continued (a retry of a continuation
    lost later fails with the state gone, and the end of the run sweeps what is left anyway)."""
    study_id = ctx.storage.get_study_id_from_name(ctx.spec.name)
    paused = ctx.storage.get_trial(ctx.storage.get_trial_id_from_study_id_trial_number(study_id, origin))
    artifact_id = paused_state(paused.user_attrs)
    if artifact_id is not None and ctx.checkpoints.location is not None:
        remove_paused(ctx.checkpoints.location, ctx.spec.name, artifact_id)


def _other_folds(
    ctx: TrialContext, trial: optuna.Trial, config: TrainConfig, first: FitResult
) -> FoldScores | None:
    """Folds 2..k once fold 1 ran to its end (None without folds, or when fold 1 stopped early)."""
    if not ctx.data.folds or first.stop_reason is not None:
        return None
    return run_other_folds(
        config,
        ctx.data.folds,
        first,
        on_epoch=lambda _fold, _record: raise_if_taken(ctx.storage.engine, trial),
    )


def _keep_checkpoint(
    ctx: TrialContext,
    trial: optuna.Trial,
    config: TrainConfig,
    best: EpochRecord,
    state_dict: dict[str, torch.Tensor],
    *,
    value: float,
) -> None:
    """Keep the best epoch's weights if the trial ranks (by ``value``) in the top k; a failure loses only
    the file. Under ``objective.folds`` they are fold 1's, ranked by the mean over the folds."""
    if not ctx.checkpoints.enabled:
        return

    def write(path: Path) -> None:
        save_checkpoint(
            path,
            state_dict=state_dict,
            config=config,
            epoch=best.epoch,
            metrics={"val_dice": best.val_dice, "val_iou": best.val_iou, "val_loss": best.val_loss},
            plan=ctx.data.plan,
            normalization=dataset_normalization(ctx.data.val),
        )

    try:
        keep_checkpoint(
            ctx.storage,
            ctx.spec.name,
            trial,
            policy=ctx.checkpoints,
            value=value,
            epoch=best.epoch,
            write=write,
        )
    except (OSError, ArtifactsError) as e:
        # The trial's result stands without its weights (they can be retrained): say so, do not fail it.
        logger.warning("trial %d: its checkpoint could not be kept: %s", trial.number, e)
        trial.set_user_attr(CHECKPOINT_ERROR, str(e)[:300])


def _stopped(trial: optuna.Trial, decision: StopDecision) -> TrialOutcome:
    record_stop(trial.set_user_attr, decision)
    return TrialOutcome(TrialState.PRUNED, reason=decision.reason, message=decision.message)


def _out_of_memory(
    trial: optuna.Trial, history: list[EpochRecord], params: dict[str, Any], error: BaseException
) -> TrialOutcome:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    detail = {"error": first_line[:300], "params": {k: _plain(v) for k, v in params.items()}}
    message = f"out of memory with {_format_params(params)}: {first_line[:120]}"
    record_stop(trial.set_user_attr, StopDecision("out_of_memory", len(history), detail, message))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    logger.warning("trial %d: %s", trial.number, message)
    return TrialOutcome(TrialState.FAIL, reason="out_of_memory", message=message)


def _peers(ctx: TrialContext, trial: optuna.Trial) -> Peers | None:
    """The study's other trials at equal epochs, as the store holds them now (None if it cannot say)."""
    try:
        return Peers.from_epochs(ctx.epochs.read_epochs(ctx.spec.name), exclude_trial_id=trial._trial_id)
    except StoreError as e:
        # The trial is still diagnosed, against its own untrained loss only: say so, do not fail it.
        logger.warning("trial %d: diagnosed without the other trials: %s", trial.number, e)
        return None


def _record_diagnosis(
    trial: optuna.Trial,
    history: list[EpochRecord],
    params: dict[str, Any],
    stop_reason: str | None = None,
    *,
    peers: Peers | None = None,
) -> None:
    if not history:
        return
    d = diagnose([r.to_dict() for r in history], params=params, stop_reason=stop_reason, peers=peers)
    trial.set_user_attr(DIAGNOSIS, d.label)
    trial.set_user_attr(DIAGNOSIS_SUMMARY, d.summary)
    if d.changes:
        trial.set_user_attr(DIAGNOSIS_CHANGES, d.changes)
    if d.candidates:
        trial.set_user_attr(DIAGNOSIS_CANDIDATES, list(d.candidates))


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _format_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
