"""The Optuna study behind a study spec: created once, resumed after, counted exactly.

Which trials count toward ``budget.n_trials``: COMPLETE, PRUNED, and FAIL for reasons that are a result
(out_of_memory, an error in training). A trial that FAILed because its worker was lost or the run was
interrupted does not count: its parameters are enqueued again (up to ``execution.max_retries`` times) so
the study still ends with exactly ``n_trials`` counted trials.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections import Counter
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.outcome import (
    BASELINE,
    FIXED_PARAMS,
    SPEC,
    SPEC_FINGERPRINT,
    SPEC_SOURCE,
    continuation_attrs,
    continued_after,
    continued_from,
    is_retryable,
    retries,
    retry_attrs,
    retry_of,
    spec_fingerprint,
    stored_spec,
)
from search.spec.schema import StudySpec
from search.store.claims import claim_lock

logger = logging.getLogger(__name__)

# The name of the study's one objective, set on every study so that the dashboard, the Optuna CLI and
# ``trials_dataframe()`` call it val_dice rather than "Objective 0" / "value".
METRIC_NAMES = ["val_dice"]


class StudyConflictError(ValueError):
    """The stored study was made from a different study file."""


@dataclass(frozen=True)
class Counts:
    """Trials of a study by what they mean for the budget."""

    complete: int
    pruned: int
    failed: int  # FAIL trials that count (out_of_memory, errors)
    retryable: int  # FAIL trials that do not count (worker_lost, interrupted)
    running: int
    waiting: int

    @property
    def finished(self) -> int:
        """Trials that count toward ``n_trials``."""
        return self.complete + self.pruned + self.failed


def make_sampler(spec: StudySpec, *, salt: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded with the spec's seed mixed with ``salt``.

    A fresh sampler is made before every ``ask`` with the number of trials so far as the salt: one worker
    replays the same proposals run after run, while several workers on one study do not draw alike.
    """
    digest = hashlib.sha256(f"{spec.sampler.seed}:{salt}".encode()).digest()
    seed = int.from_bytes(digest[:4], "little")
    if spec.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=spec.sampler.n_startup_trials,
        multivariate=True,
        constant_liar=True,  # parallel workers see running trials as bad, not as unexplored
    )


def open_study(storage: optuna.storages.BaseStorage, spec: StudySpec) -> tuple[optuna.Study, bool]:
    """Create the study (storing the resolved spec, enqueueing the baselines) or load it and check it.

    Returns:
        The study and whether this call created it.

    Raises:
        StudyConflictError: a study of that name exists with a different fingerprint.
    """
    engine = getattr(storage, "engine", None)
    if engine is None:  # not a SQL store: one process, nothing to race with
        return _create_or_load(storage, spec)
    # Workers started together (e.g. the pods of an Indexed Job) would otherwise load the study between
    # its creation and its user attributes, and refuse it as "not made by unet-search".
    with claim_lock(engine, spec.name):
        return _create_or_load(storage, spec)


def _create_or_load(storage: optuna.storages.BaseStorage, spec: StudySpec) -> tuple[optuna.Study, bool]:
    sampler = make_sampler(spec)
    try:
        study = optuna.create_study(
            storage=storage, study_name=spec.name, direction="maximize", sampler=sampler
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=spec.name, sampler=sampler)
        _check_same_spec(study, spec)
        if study.metric_names != METRIC_NAMES:  # a study made before the name was set
            _set_metric_names(study)
        return study, False
    # Only the creator gets here (the name is unique in the store), so baselines are enqueued once.
    _set_metric_names(study)
    study.set_user_attr(SPEC, spec.to_dict())
    study.set_user_attr(SPEC_FINGERPRINT, spec.fingerprint())
    study.set_user_attr(SPEC_SOURCE, str(spec.source) if spec.source else "")
    for params in spec.baselines:
        study.enqueue_trial(dict(params), user_attrs={BASELINE: True}, skip_if_exists=True)
    return study, True


def _set_metric_names(study: optuna.Study) -> None:
    # set_metric_names is marked experimental; the warning says nothing a user can act on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(METRIC_NAMES)


def _check_same_spec(study: optuna.Study, spec: StudySpec) -> None:
    stored = spec_fingerprint(study)
    if stored is None:
        raise StudyConflictError(
            f"study {spec.name!r} exists in this store but was not made by unet-search: "
            f"choose another name in the study file or another --storage"
        )
    if stored != spec.fingerprint():
        changed = _changed_sections(stored_spec(study), spec.to_dict())
        raise StudyConflictError(
            f"study {spec.name!r} in this store was made from a different study file ({changed} changed): "
            f"give the study a new name (--name NAME), use another --storage, or delete the old one with "
            f"`optuna delete-study --study-name {spec.name} --storage URL`"
        )


def _changed_sections(old: dict, new: dict) -> str:
    keys = ("data", "objective", "space", "fixed", "budget")
    changed = [k for k in keys if old.get(k) != new.get(k) and not (k == "budget" and _same_epochs(old, new))]
    return ", ".join(changed) or "settings"


def _same_epochs(old: dict, new: dict) -> bool:
    return old.get("budget", {}).get("max_epochs") == new.get("budget", {}).get("max_epochs")


def count_trials(study: optuna.Study) -> Counts:
    """Count the study's trials by budget meaning."""
    states: Counter[str] = Counter()
    for t in study.get_trials(deepcopy=False):
        states[_category(t)] += 1
    return Counts(
        complete=states["complete"],
        pruned=states["pruned"],
        failed=states["failed"],
        retryable=states["retryable"],
        running=states["running"],
        waiting=states["waiting"],
    )


def _category(trial: FrozenTrial) -> str:
    if trial.state == TrialState.FAIL:
        return "retryable" if is_retryable(trial.user_attrs) else "failed"
    return trial.state.name.lower()


def enqueue_retry(study: optuna.Study, trial: FrozenTrial, *, max_retries: int) -> bool:
    """Enqueue the parameters of a lost or interrupted trial again, unless they were retried enough.

    Returns:
        Whether a retry was enqueued.
    """
    done = retries(trial)
    # A trial lost before it drew its parameters (e.g. while it waited for a Ray worker) still has those
    # it was enqueued with (a baseline, a retry); a sampled one has none: the next trial samples anew.
    params = trial.params or trial.system_attrs.get(FIXED_PARAMS, {})
    if done >= max_retries or not params:
        logger.info("trial %d is not retried (%d of %d retries used)", trial.number, done, max_retries)
        return False
    origin = retry_of(trial)
    attrs: dict[str, int] = retry_attrs(trial.number if origin is None else origin, done + 1)
    paused = continued_from(trial)
    if paused is not None:  # a lost continuation runs again from the same paused state
        attrs |= continuation_attrs(paused, continued_after(trial))
    study.enqueue_trial(dict(params), user_attrs=attrs)
    return True
