"""What the store holds about trials and studies: every attribute key, typed readers, how a trial ended.

This module is the store's schema above Optuna's tables: every trial and study user attribute we write
is named here once (:data:`TRIAL_ATTRS`, :data:`STUDY_ATTRS`), with a comment saying what it holds, and
read through the typed readers below (:func:`best_epoch`, :func:`test_scores`, :func:`trial_worker`,
...). No other module types a key as a string literal (``tests/search/test_attribute_keys.py`` checks it);
optuna-dashboard and SQL queries read the attributes by these names.

A stopped or failed trial carries four user attributes (:data:`STOP_REASON`, :data:`STOP_EPOCH`,
:data:`STOP_DETAIL`, :data:`STOP_MESSAGE`), written by :func:`record_stop` and nothing else; every trial
that trained carries :data:`DIAGNOSIS` (one of :data:`DIAGNOSES`) and :data:`DIAGNOSIS_SUMMARY`.

To add a stop reason or a diagnosis label, add it (with its phrase) to :data:`STOP_REASONS` or
:data:`DIAGNOSIS_LABELS`; the checks, the budget counting, the findings and the plots take it from there.
To add an attribute, add its key here (and to :data:`TRIAL_ATTRS` or :data:`STUDY_ATTRS`) with a reader.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from optuna.trial import FrozenTrial, TrialState

# ---- Trial user attributes, as stored ----------------------------------------------------------------
# How it ended (record_stop) and why (search.diagnosis):
STOP_REASON = "stop_reason"  # one of STOP_REASONS
STOP_EPOCH = "stop_epoch"  # the 1-based epoch of the decision (the last stored epoch for a failure; 0: none)
STOP_DETAIL = "stop_detail"  # the numbers behind the decision, JSON-safe
STOP_MESSAGE = "stop_message"  # one human line
DIAGNOSIS = "diagnosis"  # one of DIAGNOSES
DIAGNOSIS_SUMMARY = "diagnosis_summary"  # one line: what was seen, the likely cause and the fix
DIAGNOSIS_CHANGES = "diagnosis_changes"  # the advice as settings, e.g. {"learning_rate": 0.001}
DIAGNOSIS_CANDIDATES = "diagnosis_candidates"  # an "unclear" diagnosis's two closest causes
# What it reached:
BEST_EPOCH = "best_epoch"  # the epoch of a COMPLETE trial's value (fold 1's under objective.folds)
FOLD_VAL_DICE = "fold_val_dice"  # objective.folds: each fold's best-epoch val Dice, fold 1 first
FOLD_BEST_EPOCHS = "fold_best_epochs"  # objective.folds: the epochs of those values
# How it trained:
TRAIN_IMAGES = "train_images"  # images per epoch, for the compute in reports
CPU_THREADS = "cpu_threads"  # torch's intra-op threads, so that search.retrain reproduces the numbers
CHECKPOINT = "checkpoint"  # the kept checkpoint: {"artifact_id", "epoch"} (search.checkpoints)
CHECKPOINT_ERROR = "checkpoint_error"  # why its checkpoint could not be kept (the first 300 characters)
# Where it ran (search.store.heartbeat; the Ray worker):
WORKER_HOST = "worker_host"  # host name of the worker process
WORKER_PID = "worker_pid"  # its process id on that host
WORKER_STARTED = "worker_started"  # its start time (epoch seconds, None without /proc): tells pid reuse
RAY_NODE_ID = "ray_node_id"  # the Ray node (set once a Ray worker has started the trial)
GPU_IDS = "gpu_ids"  # the GPUs Ray gave the trial, as strings
CUDA_VISIBLE_DEVICES = "cuda_visible_devices"  # what the worker process saw of them
GPU_FALLBACK = "gpu_fallback"  # why a trial given GPUs trained on the CPU
# Why it exists (enqueued trials):
BASELINE = "baseline"  # True: the study file's baseline parameters, enqueued first
RETRY_OF = "retry_of"  # the number of the trial whose parameters this retry runs again
RETRY = "retry"  # how many times those parameters were retried so far (1 for the first retry)
# Paused for rank and continued (search.checkpoints.paused, search.execution.promotion):
PAUSED_STATE = "paused_state"  # a paused trial's training state: the artifact id of its last epoch's state
CONTINUED_FROM = "continued_from"  # the number of the paused trial whose training this one continues
CONTINUED_AFTER = "continued_after"  # the epoch that state is from: this trial trains epochs after it

TRIAL_ATTRS: frozenset[str] = frozenset(
    {
        STOP_REASON,
        STOP_EPOCH,
        STOP_DETAIL,
        STOP_MESSAGE,
        DIAGNOSIS,
        DIAGNOSIS_SUMMARY,
        DIAGNOSIS_CHANGES,
        DIAGNOSIS_CANDIDATES,
        BEST_EPOCH,
        FOLD_VAL_DICE,
        FOLD_BEST_EPOCHS,
        TRAIN_IMAGES,
        CPU_THREADS,
        CHECKPOINT,
        CHECKPOINT_ERROR,
        WORKER_HOST,
        WORKER_PID,
        WORKER_STARTED,
        RAY_NODE_ID,
        GPU_IDS,
        CUDA_VISIBLE_DEVICES,
        GPU_FALLBACK,
        BASELINE,
        RETRY_OF,
        RETRY,
        PAUSED_STATE,
        CONTINUED_FROM,
        CONTINUED_AFTER,
    }
)

# ---- Study user attributes, as stored ----------------------------------------------------------------
SPEC = "spec"  # the resolved study file as plain data (StudySpec.to_dict)
SPEC_FINGERPRINT = "spec_fingerprint"  # its fingerprint: a changed study file conflicts on resume
SPEC_SOURCE = "spec_source"  # the study file's path ("" for a spec built in code)
DATA_PLAN = "data_plan"  # the patch size and why (unet.data.plan), as plain data
TEST_SCORES = "test_scores"  # held-out test scores by trial number (str), search.execution.testset
CHECKPOINTS = "checkpoints"  # the kept checkpoints' index, best first (search.checkpoints.keep)
CHECKPOINTS_ROOT = "checkpoints_root"  # the artifact root the index is relative to; null: the store's default

STUDY_ATTRS: frozenset[str] = frozenset(
    {SPEC, SPEC_FINGERPRINT, SPEC_SOURCE, DATA_PLAN, TEST_SCORES, CHECKPOINTS, CHECKPOINTS_ROOT}
)

# Optuna's own system attribute of an enqueued trial: the parameters it was enqueued with.
FIXED_PARAMS = "fixed_params"

# Why a trial stopped or failed -> how it reads after "N trials with ..." (report findings), in the order
# findings list them. Who decides: the plateau rule (plateau, diverged), the cross-trial rule
# (underperforming: final; paused: under ``pruning.cross_trial.pause``, its last epoch's state is kept and
# a new trial linked by ``continued_from`` trains on from it once it ranks at its rung), the trial's own
# process (out_of_memory, error, interrupted) or whoever finds its
# worker gone (worker_lost: the reaper, the Ray driver).
STOP_REASONS: dict[str, str] = {
    "plateau": "were stopped on a plateau",  # own val loss stopped improving
    "diverged": "diverged",  # own val loss became NaN/inf or blew up
    "underperforming": "were pruned as underperforming",  # val Dice behind the other trials
    "paused": "were paused behind the other trials (continued once they rank)",  # kept for promotion
    "out_of_memory": "ran out of memory",  # the accelerator ran out of memory
    "error": "failed with an error",  # training raised (bad settings, a bug on a worker)
    "worker_lost": "lost their worker",  # the process or node running the trial went away
    "interrupted": "were interrupted",  # the user or the scheduler stopped the study
}
PAUSED = "paused"  # the stop reason of a trial paused for rank (the one stop that may be continued)
# Failures that say nothing about the parameters: the trial does not count and runs again.
RETRYABLE_REASONS: frozenset[str] = frozenset({"worker_lost", "interrupted"})

# Diagnosis labels (search.diagnosis) -> (how they read after "N trials with ...", what the label means),
# in the order findings list them, which is also the order search.diagnosis checks the causes in (the
# first clear one wins). HEALTHY, TOO_EARLY and UNCLEAR are labels but never findings.
DIAGNOSIS_LABELS: dict[str, tuple[str, str]] = {
    "diverged": ("diverged", "a loss became NaN/inf or rose far above its start"),
    "input_scale": (
        "saw unnormalised inputs without normalisation layers",
        "unnormalised inputs (e.g. 0..255) into a model without normalisation layers",
    ),
    "vanishing_gradients": (
        "had vanishing gradients",
        "the first layer's gradients are vanishingly small next to the last layer's",
    ),
    "stalled": ("stalled", "the training loss barely moved (learning rate too low, dead units)"),
    "no_signal": (
        "found nothing learnable (val Dice at chance)",
        "validation Dice never rose above chance: masks may not match the images",
    ),
    "background_only": (
        "predicted background only",
        "the model predicts (almost) no foreground (class imbalance)",
    ),
    "constant_floor": (
        "scored what predicting foreground everywhere scores",
        "val Dice at the all-foreground floor of mostly-foreground masks (class imbalance, other way round)",
    ),
    "foreground_flood": (
        "flooded the image with foreground",
        "the model predicts far more foreground than there is",
    ),
    "unstable": ("were unstable", "loss jumps or gradient spikes from one epoch to the next"),
    "overfitting": ("overfitted", "fits the training images, validation gets worse"),
    "underfitting": (
        "underfitted",
        "learns, but fits the training images poorly too (capacity, depth, learning rate)",
    ),
    "behind_peers": (
        "stayed at chance while the other trials learned",
        "validation Dice stayed at chance while the study's other trials learned by that epoch",
    ),
    "too_early": (
        "were stopped before their curves could be judged",
        "stopped before its curves could show a cause (fewer than 3 epochs, nothing wrong yet)",
    ),
    "healthy": ("were healthy", "nothing wrong seen in enough epochs to judge the trends"),
    "unclear": ("had an unclear diagnosis", "the evidence does not decide between two causes"),
}
# The label -> its phrase in findings, and the label -> what it means (reports, the README).
DIAGNOSES: dict[str, str] = {label: phrase for label, (phrase, _) in DIAGNOSIS_LABELS.items()}
DIAGNOSIS_MEANINGS: dict[str, str] = {label: meaning for label, (_, meaning) in DIAGNOSIS_LABELS.items()}
HEALTHY = "healthy"
TOO_EARLY = "too_early"  # stopped before a cause could show: what was seen, and at which epoch
UNCLEAR = "unclear"


@dataclass(frozen=True)
class StopDecision:
    """Why a trial was stopped or failed, at which epoch, and the numbers behind it.

    Raises:
        ValueError: ``reason`` is not one of :data:`STOP_REASONS`.
    """

    reason: str  # one of STOP_REASONS
    epoch: int  # 1-based epoch at which the decision was taken (0: before the first epoch ended)
    detail: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable, no NaN
    message: str | None = None  # one human line: what was seen, with the numbers (None: not stored)

    def __post_init__(self) -> None:
        if self.reason not in STOP_REASONS:
            raise ValueError(f"stop reason must be one of {', '.join(STOP_REASONS)} but got {self.reason!r}")

    def to_dict(self) -> dict[str, object]:
        """The decision as plain data, for the store and the reports."""
        detail = dict(self.detail)
        return {"reason": self.reason, "epoch": self.epoch, "detail": detail, "message": self.message}


@dataclass
class TrialOutcome:
    """How a trial ended, ready for ``study.tell``."""

    state: TrialState
    value: float | None = None  # the best val Dice of a COMPLETE trial
    reason: str | None = None  # stop_reason of a PRUNED or FAILED trial
    message: str | None = None  # one line for the progress display


# Writes one user attribute of one trial: ``trial.set_user_attr`` inside its worker, or
# ``functools.partial(storage.set_trial_user_attr, trial_id)`` from outside.
AttrWriter = Callable[[str, Any], None]


def record_stop(write: AttrWriter, decision: StopDecision) -> None:
    """Store why a trial stopped or failed (before it is told: Optuna refuses writes to finished trials)."""
    write(STOP_REASON, decision.reason)
    write(STOP_EPOCH, int(decision.epoch))
    write(STOP_DETAIL, dict(decision.detail))
    if decision.message is not None:
        write(STOP_MESSAGE, decision.message)


class HasUserAttrs(Protocol):
    """A trial or a study as Optuna gives it (``FrozenTrial``, ``Trial``, ``Study``, ``StudySummary``)."""

    @property
    def user_attrs(self) -> dict[str, Any]: ...


# What the readers take: a trial or study, or its user attributes as a mapping (e.g. what
# ``storage.get_study_user_attrs`` returns).
Attributed = HasUserAttrs | Mapping[str, Any]


def _attrs(source: Attributed) -> Mapping[str, Any]:
    return source if isinstance(source, Mapping) else source.user_attrs


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# ---- Readers and writers of trial attributes ------------------------------------------------------------


def stop_reason(source: Attributed) -> str | None:
    """The stop reason a trial's user attributes hold, or None."""
    reason = _attrs(source).get(STOP_REASON)
    return reason if isinstance(reason, str) and reason else None


def is_retryable(source: Attributed) -> bool:
    """Whether a FAILed trial with these user attributes is run again instead of counted."""
    return stop_reason(source) in RETRYABLE_REASONS


def diagnosis(source: Attributed) -> str | None:
    """The trial's diagnosis label (one of :data:`DIAGNOSES`), or None before it was diagnosed."""
    label = _attrs(source).get(DIAGNOSIS)
    return label if isinstance(label, str) and label else None


def recorded_best_epoch(source: Attributed) -> int | None:
    """The epoch of a COMPLETE trial's value as the trial stored it (:data:`BEST_EPOCH`), or None."""
    return _int(_attrs(source).get(BEST_EPOCH))


def train_images(source: Attributed) -> int | None:
    """Training images per epoch, as the trial recorded them, or None (an older trial)."""
    return _int(_attrs(source).get(TRAIN_IMAGES))


def cpu_threads(source: Attributed) -> int | None:
    """The CPU thread count the trial trained with, or None (an older trial)."""
    return _int(_attrs(source).get(CPU_THREADS))


def kept_checkpoint(source: Attributed) -> dict[str, Any]:
    """The trial's kept checkpoint (:data:`CHECKPOINT`: artifact_id, epoch); empty when none."""
    entry = _attrs(source).get(CHECKPOINT)
    return dict(entry) if isinstance(entry, Mapping) else {}


@dataclass(frozen=True)
class WorkerIdentity:
    """The process that ran a trial: host, pid and start time (None where unknown)."""

    host: str | None
    pid: int | None
    started: float | None  # epoch seconds; tells the worker from a later process with the same pid


def record_worker(write: AttrWriter, identity: WorkerIdentity) -> None:
    """Store which process runs the trial (search.store.heartbeat, when the trial starts)."""
    write(WORKER_HOST, identity.host)
    write(WORKER_PID, identity.pid)
    write(WORKER_STARTED, identity.started)


def trial_worker(source: Attributed) -> WorkerIdentity:
    """The process that ran the trial, as :func:`record_worker` stored it (all None: not recorded)."""
    attrs = _attrs(source)
    started = attrs.get(WORKER_STARTED)
    host = attrs.get(WORKER_HOST)
    return WorkerIdentity(
        host=host if isinstance(host, str) else None,
        pid=_int(attrs.get(WORKER_PID)),
        started=float(started) if isinstance(started, int | float) else None,
    )


def ray_node(source: Attributed) -> str | None:
    """The Ray node that started the trial, or None (not started on Ray, or not yet)."""
    node = _attrs(source).get(RAY_NODE_ID)
    return node if isinstance(node, str) else None


def retry_of(source: Attributed) -> int | None:
    """The number of the trial whose parameters this one runs again, or None (not a retry)."""
    return _int(_attrs(source).get(RETRY_OF))


def retries(source: Attributed) -> int:
    """How many times the trial's parameters were retried up to and including it (0: not a retry)."""
    return _int(_attrs(source).get(RETRY)) or 0


def retry_attrs(origin: int, retry: int) -> dict[str, int]:
    """The user attributes a retry is enqueued with (:data:`RETRY_OF`, :data:`RETRY`)."""
    return {RETRY_OF: int(origin), RETRY: int(retry)}


def paused_state(source: Attributed) -> str | None:
    """The artifact id of a paused trial's training state (:data:`PAUSED_STATE`), or None."""
    artifact_id = _attrs(source).get(PAUSED_STATE)
    return artifact_id if isinstance(artifact_id, str) and artifact_id else None


def continued_from(source: Attributed) -> int | None:
    """The number of the paused trial this one continues (:data:`CONTINUED_FROM`), or None."""
    return _int(_attrs(source).get(CONTINUED_FROM))


def continued_after(source: Attributed) -> int:
    """The epoch a continuation trains on from (:data:`CONTINUED_AFTER`; 0: not a continuation)."""
    return _int(_attrs(source).get(CONTINUED_AFTER)) or 0


def continuations(trials: Iterable[FrozenTrial]) -> dict[int, int]:
    """Paused trial number -> the number of its continuation (the first, if a lost one was retried)."""
    found: dict[int, int] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        origin = continued_from(trial)
        if origin is not None:
            found.setdefault(origin, trial.number)
    return found


def continuation_attrs(origin: int, epoch: int) -> dict[str, int]:
    """The user attributes a continuation is enqueued with (its origin and the epoch it goes on after)."""
    return {CONTINUED_FROM: int(origin), CONTINUED_AFTER: int(epoch)}


# ---- Readers of study attributes ----------------------------------------------------------------------


def stored_spec(source: Attributed) -> dict[str, Any]:
    """The study file stored with the study (:data:`SPEC`) as plain data; empty when none."""
    spec = _attrs(source).get(SPEC)
    return dict(spec) if isinstance(spec, Mapping) else {}


def spec_fingerprint(source: Attributed) -> str | None:
    """The fingerprint of the stored study file, or None (a study not made by unet-search)."""
    fingerprint = _attrs(source).get(SPEC_FINGERPRINT)
    return fingerprint if isinstance(fingerprint, str) else None


def stored_test_scores(source: Attributed) -> dict[str, dict[str, Any]]:
    """Held-out test scores by trial number (as a string): ``{"3": {"test_dice": ..., "images": ...}}``."""
    scores = _attrs(source).get(TEST_SCORES)
    return {str(k): dict(v) for k, v in scores.items()} if isinstance(scores, Mapping) else {}


def checkpoint_index(source: Attributed) -> list[dict[str, Any]]:
    """The study's kept checkpoints (:data:`CHECKPOINTS`), best first; empty when none."""
    index = _attrs(source).get(CHECKPOINTS)
    return [dict(e) for e in index] if isinstance(index, list) else []


def json_number(value: float) -> float | str:
    """``value`` as a JSON-safe number: finite floats as they are, NaN/inf as "nan", "inf" or "-inf"."""
    value = float(value)
    return value if math.isfinite(value) else str(value)
