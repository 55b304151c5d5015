"""The progress line's time estimate, on a fake clock: it counts the epochs of trials in progress."""

from __future__ import annotations

import io

import optuna
import pytest
from optuna.trial import TrialState

from search.execution.budget import Compute
from search.execution.objective import TrialOutcome
from search.execution.progress import Progress
from search.execution.study import count_trials
from unet.history import EpochRecord


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(epoch: int) -> EpochRecord:
    nan = float("nan")
    return EpochRecord(
        epoch=epoch,
        train_loss=0.5,
        val_loss=0.5,
        val_dice=0.5,
        val_iou=0.3,
        learning_rate=1e-3,
        grad_norm=nan,
        grad_norm_max=nan,
        seconds=10.0,
        images_per_s=1.0,
    )


def train(trial: optuna.Trial, progress: Progress, clock: FakeClock, epochs: range) -> None:
    """Epochs of 10 s each, shown first (as fit's callback does), then reported to the study."""
    for epoch in epochs:
        clock.now += 10
        progress.on_epoch(trial, record(epoch))
        trial.report(0.5, epoch)


@pytest.fixture
def study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(direction="maximize")


def test_the_estimate_exists_during_the_first_trial(study: optuna.Study) -> None:
    # Found as: "~? left" during the whole first trial.
    clock = FakeClock()
    progress = Progress(study, n_trials=3, max_epochs=4, stream=io.StringIO(), clock=clock)
    assert progress.remaining_seconds(count_trials(study)) is None  # nothing trained yet
    trial = study.ask()
    train(trial, progress, clock, range(1, 2))
    # 10 s per epoch; 3 epochs of this trial and 4 of each of the 2 others to come.
    assert progress.remaining_seconds(count_trials(study)) == pytest.approx(110)
    train(trial, progress, clock, range(2, 4))
    assert progress.remaining_seconds(count_trials(study)) == pytest.approx(90)


def test_the_estimate_does_not_jump_when_trials_end(study: optuna.Study) -> None:
    # Found as: 5m47s -> 16m13s -> 4m03s, trials counted whole and the running ones not at all.
    clock = FakeClock()
    stream = io.StringIO()
    progress = Progress(study, n_trials=4, max_epochs=4, stream=stream, clock=clock)
    estimates = []
    for _ in range(2):
        trial = study.ask()
        for epoch in range(1, 5):
            train(trial, progress, clock, range(epoch, epoch + 1))
            estimates.append(progress.remaining_seconds(count_trials(study)))
        frozen = study.tell(trial, 0.5)
        progress.on_trial(frozen, TrialOutcome(TrialState.COMPLETE, value=0.5), count_trials(study))
        estimates.append(progress.remaining_seconds(count_trials(study)))
    # Every epoch takes 10 s: the estimate falls by exactly 10 s per epoch and stays put when a trial ends.
    assert estimates == pytest.approx([150, 140, 130, 120, 120, 110, 100, 90, 80, 80])
    assert "~1m20s left" in stream.getvalue().splitlines()[-1]


def test_short_trials_shorten_the_estimate_and_a_resumed_run_counts_only_its_own_time(
    study: optuna.Study,
) -> None:
    # Before this run: one pruned trial of 2 epochs, trained at another speed.
    old = study.ask()
    for epoch in (1, 2):
        old.report(0.1, epoch)
    study.tell(old, state=TrialState.PRUNED)
    clock = FakeClock()
    progress = Progress(study, n_trials=3, max_epochs=10, stream=io.StringIO(), clock=clock)
    trial = study.ask()
    train(trial, progress, clock, range(1, 2))
    # Trials take 2 epochs on average so far: 1 more for this one and 2 for the last, at 10 s each.
    assert progress.remaining_seconds(count_trials(study)) == pytest.approx(30)


def test_the_timeout_caps_the_estimate(study: optuna.Study) -> None:
    clock = FakeClock()
    progress = Progress(study, n_trials=10, max_epochs=10, timeout=60, stream=io.StringIO(), clock=clock)
    train(study.ask(), progress, clock, range(1, 3))
    assert progress.remaining_seconds(count_trials(study)) == pytest.approx(40)


def test_under_a_compute_budget_the_line_and_estimate_count_compute_left(study: optuna.Study) -> None:
    # 3 full trials of 4 epochs: 12 epochs. Compute is measured as the store would, from the reports here.
    def compute() -> Compute:
        spent = sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))
        return Compute(spent=spent, reserved=0, trial_epochs=4, budget=12)

    clock = FakeClock()
    stream = io.StringIO()
    progress = Progress(study, n_trials=None, max_epochs=4, compute=compute, stream=stream, clock=clock)
    pruned = study.ask()
    train(pruned, progress, clock, range(1, 3))
    frozen = study.tell(pruned, state=TrialState.PRUNED)
    progress.on_trial(frozen, TrialOutcome(TrialState.PRUNED, reason="underperforming"), count_trials(study))
    # 10 s per epoch; 12 - 2 epochs of the budget left, however many trials they buy.
    assert progress.remaining_seconds(count_trials(study), compute()) == pytest.approx(100)
    assert stream.getvalue().startswith("[compute 0.5/3, 1 trial] 0 complete, 1 pruned")
    assert "~1m40s left" in stream.getvalue()
