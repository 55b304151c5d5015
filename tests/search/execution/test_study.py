"""The Optuna study behind a spec, on a real SQLite store: created once, resumed, counted, retried."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.execution.study import StudyConflictError, count_trials, enqueue_retry, make_sampler, open_study
from search.outcome import StopDecision, continuation_attrs, continued_after, continued_from, record_stop
from search.spec.schema import StudySpec, load_spec
from search.store.engine import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def smoke(**changes: object) -> StudySpec:
    data = load_spec("unet-smoke").to_dict()
    data.pop("source")
    data.update(changes)
    return StudySpec.from_dict(data)


@pytest.fixture
def sqlite_storage(tmp_path: Path) -> optuna.storages.RDBStorage:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    yield storage
    storage.engine.dispose()


def test_created_once_with_its_spec_and_baselines_then_resumed(sqlite_storage) -> None:
    spec = smoke()
    study, created = open_study(sqlite_storage, spec)
    assert created
    assert study.user_attrs["spec_fingerprint"] == spec.fingerprint()
    assert study.user_attrs["spec"] == spec.to_dict()
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [dict(b) for b in spec.baselines]
    again, created_again = open_study(sqlite_storage, spec)
    assert not created_again and again.study_name == study.study_name
    assert len(again.get_trials(states=(TrialState.WAITING,))) == len(spec.baselines)  # not enqueued twice


def test_a_changed_study_file_conflicts(sqlite_storage) -> None:
    open_study(sqlite_storage, smoke())
    changed = smoke(budget={"n_trials": 3, "timeout": None, "max_epochs": 5})
    with pytest.raises(StudyConflictError, match=r"different study file \(budget changed\)"):
        open_study(sqlite_storage, changed)
    # The budget's trial count is not part of the fingerprint: more trials continue the same study.
    open_study(sqlite_storage, smoke(budget={"n_trials": 9, "timeout": None, "max_epochs": 2}))


def test_counts_by_budget_meaning(sqlite_storage) -> None:
    study, _ = open_study(sqlite_storage, smoke(baselines=[]))
    endings = [
        (TrialState.COMPLETE, None),
        (TrialState.PRUNED, "plateau"),
        (TrialState.FAIL, "out_of_memory"),
        (TrialState.FAIL, "worker_lost"),
        (TrialState.FAIL, "interrupted"),
    ]
    for state, reason in endings:
        trial = study.ask()
        if reason is not None:
            record_stop(trial.set_user_attr, StopDecision(reason, 1))
        study.tell(trial, 0.5 if state == TrialState.COMPLETE else None, state=state)
    study.ask()
    counts = count_trials(study)
    assert (counts.complete, counts.pruned, counts.failed, counts.retryable, counts.running) == (
        1,
        1,
        1,
        2,
        1,
    )
    assert counts.finished == 3


def test_retries_keep_their_origin_and_stop_at_max_retries(sqlite_storage) -> None:
    study, _ = open_study(sqlite_storage, smoke(baselines=[]))
    trial = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
    lost = study.tell(trial, state=TrialState.FAIL)
    assert enqueue_retry(study, lost, max_retries=1)
    retry = study.ask()
    # An enqueued trial's parameters are fixed: suggesting them returns the lost trial's values.
    assert retry.suggest_float("learning_rate", 1e-3, 1e-1, log=True) == lost.params["learning_rate"]
    assert (retry.user_attrs["retry_of"], retry.user_attrs["retry"]) == (lost.number, 1)
    lost_again = study.tell(retry, state=TrialState.FAIL)
    assert not enqueue_retry(study, lost_again, max_retries=1)
    assert study.get_trials(states=(TrialState.WAITING,)) == []


def test_a_lost_continuation_is_retried_from_the_same_paused_trial(sqlite_storage) -> None:
    study, _ = open_study(sqlite_storage, smoke(baselines=[]))
    study.enqueue_trial({"learning_rate": 0.01}, user_attrs=continuation_attrs(7, 3))
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-3, 1e-1, log=True)
    lost = study.tell(trial, state=TrialState.FAIL)
    assert enqueue_retry(study, lost, max_retries=1)
    retry = study.ask()
    assert (continued_from(retry), continued_after(retry), retry.user_attrs["retry_of"]) == (
        7,
        3,
        lost.number,
    )


def test_sampler_seed_depends_on_spec_seed_and_salt() -> None:
    spec = smoke()

    def draws(sampler_spec: StudySpec, salt: int) -> list[float]:
        study = optuna.create_study(sampler=make_sampler(sampler_spec, salt=salt))
        return [study.ask().suggest_float("x", 0, 1) for _ in range(3)]

    assert draws(spec, 0) == draws(spec, 0)
    assert draws(spec, 0) != draws(spec, 1)
    assert draws(spec, 0) != draws(smoke(sampler={"name": "random", "seed": 1, "n_startup_trials": 0}), 0)
