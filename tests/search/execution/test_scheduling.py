"""What every backend shares, on a real SQLite store: claiming within the budget, telling, retrying."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.execution.data import load_study_data
from search.execution.objective import TrialContext
from search.execution.scheduling import claim_next, tell, tell_interrupted
from search.execution.study import open_study
from search.outcome import StopDecision, TrialOutcome, record_stop
from search.spec.schema import StudySpec, load_spec
from search.store.engine import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def opened(tmp_path: Path):
    data = load_spec("unet-smoke").to_dict()
    data.pop("source")
    data["baselines"] = []
    spec = StudySpec.from_dict(data)  # 3 trials, max_retries 0
    storage = open_storage(f"sqlite:///{tmp_path / 'scheduling.db'}")
    study, _ = open_study(storage, spec)
    yield study, TrialContext(spec=spec, storage=storage, data=load_study_data(spec))
    storage.engine.dispose()


def test_claims_stop_at_the_budget_counting_running_trials(opened) -> None:
    study, ctx = opened
    claimed = [claim_next(study, ctx, n_trials=2, timed_out=False)[0] for _ in range(3)]
    assert [c[1] if c else None for c in claimed] == [0, 1, None]  # salt: trials so far
    assert claim_next(study, ctx, n_trials=5, timed_out=True)[0] is None
    first = claimed[0]
    assert first is not None
    tell(study, first[0], TrialOutcome(TrialState.COMPLETE, value=0.5))
    nothing, counts, done = claim_next(study, ctx, n_trials=2, timed_out=False)
    assert nothing is None and (counts.finished, counts.running) == (1, 1)
    assert not done  # the running trial may yet be lost and retried


def test_tell_gives_the_value_only_to_a_complete_trial(opened) -> None:
    study, _ = opened
    done = tell(study, study.ask(), TrialOutcome(TrialState.COMPLETE, value=0.7))
    pruned = tell(study, study.ask(), TrialOutcome(TrialState.PRUNED, reason="plateau"))
    assert (done.state, done.value, pruned.state, pruned.value) == (
        TrialState.COMPLETE,
        0.7,
        TrialState.PRUNED,
        None,
    )


def test_an_interrupted_trial_gets_one_retry_beyond_max_retries(opened) -> None:
    study, ctx = opened
    assert ctx.spec.execution.max_retries == 0
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-3, 1e-1, log=True)
    record_stop(trial.set_user_attr, StopDecision("interrupted", 0, {"epochs_done": 0}))
    frozen = tell_interrupted(study, trial, ctx)
    assert frozen.state == TrialState.FAIL
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.system_attrs["fixed_params"] == frozen.params and retry.user_attrs["retry"] == 1
