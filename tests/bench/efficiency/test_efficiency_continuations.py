"""Stops that can be continued in the replay (our pauses, the one-epoch screen), false kills, and what a
user gets: the best Dice at a budget, the anytime curve and its plot, the best peer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench.efficiency.analysis import anytime_points, summarize
from bench.efficiency.anytime import plot_anytime
from bench.efficiency.one_epoch_peer import OneEpochSearch
from bench.efficiency.replay import STRATEGIES, Proposal, ReplayRun, replay
from bench.efficiency.table import Row, Table
from bench.efficiency.task import HardTask
from search.spec.schema import StudySpec

# Three learning rates over the space's log-uniform range 1e-4..1e-1 (snapped to the nearest): the
# middle one draws half the proposals and learns nothing, so a slow starter soon ranks in the top third.
TASK = HardTask(
    n_train=10,
    n_val=4,
    size=16,
    epochs=3,
    learning_rates=(1e-4, 1e-3, 1e-1),
    losses=("dice",),
    norms=("batch",),
)
EARLY = [0.5, 0.6, 0.7]  # good at once, ends below the top
NOTHING = [0.05, 0.05, 0.05]
LATE = [0.2, 0.6, 1.0]  # the late bloomer: behind at epoch 1, the best at epoch 3


def _row(lr: float, dice: list[float]) -> Row:
    return Row(
        params={"learning_rate": lr, "loss": "dice", "model.norm": "batch"},
        val_loss=tuple(1.0 - d / 2 for d in dice),
        val_dice=tuple(dice),
        train_images=tuple(TASK.n_train for _ in dice),
        stop_reason=None,
        seconds=0.0,
    )


TABLE = Table(TASK, "hand-made", (_row(1e-4, EARLY), _row(1e-3, NOTHING), _row(1e-1, LATE)), 0.0, True)


@pytest.fixture(scope="module")
def spec() -> Iterator[StudySpec]:
    # Quiet (every stop is logged at INFO) for this module only: a level left on "search" hid the store's
    # log lines from a later test's caplog.
    verbosity, level = optuna.logging.get_verbosity(), logging.getLogger("search").level
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("search").setLevel(logging.WARNING)
    try:
        yield StudySpec.from_dict(TASK.study_dict("bench-test"))
    finally:
        optuna.logging.set_verbosity(verbosity)
        logging.getLogger("search").setLevel(level)


class _Scripted:
    """Trial 1 is the late bloomer, paused after epoch 1; trial 2 continues it; the rest learn nothing."""

    def __init__(self) -> None:
        self.asked = 0

    def ask(self) -> Proposal:
        self.asked += 1
        if self.asked == 1:
            pause = lambda epoch, loss, dice: "paused" if epoch == 1 else None  # noqa: E731
            return Proposal(1, dict(TABLE.rows[2].params), pause, key=1)
        if self.asked == 2:
            return Proposal(2, dict(TABLE.rows[2].params), lambda *_: None, key=2, continues=1, start_epoch=1)
        return Proposal(self.asked, dict(TABLE.rows[1].params), lambda *_: None, key=self.asked)

    def tell(self, proposal: Proposal, state: TrialState, best: float) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_continued_trial_trains_on_where_it_stopped_and_is_not_a_kill(
    spec: StudySpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(STRATEGIES, "scripted", ("test", lambda spec, seed: _Scripted()))
    n = TASK.n_train
    run = replay(TABLE, "scripted", 0, spec=spec, budget=4 * n, workers=1)
    # The pause and its continuation together train the row's three epochs once, as one run would:
    # the best Dice so far after 1, 2 and 3 epochs' compute, the target (0.95) at the third.
    assert run.trace == [(n, 0.2), (2 * n, 0.6), (3 * n, 1.0)]
    assert run.compute_to_target == 3 * n
    assert (run.pruned_by_rule, run.continued, run.killed, run.false_kills) == (1, 1, 0, 0)


def test_the_same_stop_never_continued_is_a_false_kill(
    spec: StudySpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NeverContinued(_Scripted):
        def ask(self) -> Proposal:
            proposal = super().ask()
            if self.asked == 2:  # a new trial of the row that learns nothing instead
                return Proposal(2, dict(TABLE.rows[1].params), lambda *_: None, key=2)
            return proposal

    monkeypatch.setitem(STRATEGIES, "scripted", ("test", lambda spec, seed: NeverContinued()))
    run = replay(TABLE, "scripted", 0, spec=spec, budget=4 * TASK.n_train, workers=1)
    assert (run.pruned_by_rule, run.continued, run.killed, run.false_kills, run.top_killed) == (1, 0, 1, 1, 1)
    assert run.best_dice == 0.2 and run.compute_to_target is None


def test_ours_pause_continues_what_ours_kills(spec: StudySpec) -> None:
    """The service's own pause and promotion (search.execution.promotion) in the replay: with the same
    seeds, pausing loses fewer late bloomers and every pause is either continued or counted a kill."""
    budget = 30 * TASK.n_train
    plain = [replay(TABLE, "ours", seed, spec=spec, budget=budget) for seed in range(4)]
    paused = [replay(TABLE, "ours_pause", seed, spec=spec, budget=budget) for seed in range(4)]
    assert sum(r.continued for r in plain) == 0
    assert sum(r.continued for r in paused) > 0
    for run in paused:
        assert run.killed == run.pruned_by_rule - run.continued
    assert sum(r.false_kills for r in paused) < sum(r.false_kills for r in plain)


def test_one_epoch_screens_then_trains_on_the_best_screened() -> None:
    search = OneEpochSearch(
        StudySpec.from_dict(TASK.study_dict("bench-test")).space, seed=0, screen=3, keep=1
    )
    screens = [search.ask() for _ in range(3)]
    assert [(a.max_epochs, a.start_epoch, a.continues) for a in screens] == [(1, 0, None)] * 3
    for a, dice in zip(screens, (0.2, 0.9, 0.5), strict=True):
        search.tell(a.key, dice)
    picked = search.ask()  # the round's screens are done: the best one trains on from epoch 1
    assert (picked.continues, picked.start_epoch, picked.max_epochs) == (screens[1].key, 1, None)
    assert picked.params == screens[1].params
    nxt = search.ask()  # a new round of screens
    assert (nxt.max_epochs, nxt.continues) == (1, None)


def test_one_epoch_peer_replays_with_its_screens_continued(spec: StudySpec) -> None:
    run = replay(TABLE, "one_epoch_topk", 0, spec=spec, budget=30 * TASK.n_train)
    assert run.continued > 0
    assert run.killed == run.pruned_by_rule - run.continued


def _run(strategy: str, seed: int, trace: list[tuple[float, float]], ctt: float | None) -> ReplayRun:
    return ReplayRun(strategy, seed, 100.0, ctt, trace[-1][1], 0.0, trace=trace)


def test_best_at_a_budget_anytime_points_and_the_best_peer() -> None:
    runs = [
        _run("random", 0, [(10.0, 0.3), (60.0, 0.8)], 60.0),
        _run("random", 1, [(20.0, 0.5), (90.0, 0.9)], 90.0),
        _run("asha", 0, [(10.0, 0.6), (40.0, 0.85)], 40.0),
        _run("asha", 1, [(10.0, 0.6), (50.0, 0.85)], 50.0),
        _run("ours", 0, [(5.0, 0.7), (30.0, 0.9)], 30.0),
        _run("ours", 1, [(5.0, 0.7), (20.0, 0.9)], 20.0),
    ]
    assert runs[0].best_at(9.9) == 0.0 and runs[0].best_at(10.0) == 0.3 and runs[0].best_at(100) == 0.8
    out = summarize(runs, unit=10.0, shipped=5.0)  # shipped budget: 5 units = 50 images
    assert out["random"]["best_at_shipped"] == {"budget": 5.0, "median": 0.4, "q1": 0.35, "q3": 0.45}
    assert out["asha"]["best_at_shipped"]["median"] == 0.85
    assert out["ours"]["best_at_shipped"]["median"] == 0.9
    assert [p["budget"] for p in out["ours"]["anytime"]] == anytime_points(10.0) == [1, 2, 4, 8, 10.0]
    assert [p["median"] for p in out["random"]["anytime"]] == [0.15, 0.4, 0.4, 0.65, 0.85]
    # The best peer is the one with the least median compute to target (asha: 4.5 units against 7.5).
    assert out["ours"]["best_peer"]["name"] == "asha"
    assert out["ours"]["best_peer"]["median"] == pytest.approx(4.5 / 2.5)
    assert "best_peer" not in out["asha"]
    # A shipped budget above the replay's is read at the replay's.
    assert summarize(runs, unit=10.0, shipped=50.0)["ours"]["best_at_shipped"]["budget"] == 10.0


def test_the_anytime_plot_is_a_png(tmp_path: Path) -> None:
    runs = [
        _run(s, seed, [(10.0, 0.3 + 0.1 * seed), (60.0, 0.8)], 60.0)
        for s in ("random", "ours")
        for seed in (0, 1)
    ]
    path = tmp_path / "plots" / "anytime.png"
    plot_anytime(runs, unit=10.0, title="test", path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
