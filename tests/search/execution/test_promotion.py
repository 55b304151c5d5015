"""A stop for rank is a pause: paused trials keep their state, are continued once they rank, and are swept."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search.checkpoints.keep import CheckpointPolicy, reconcile
from search.checkpoints.store import study_files
from search.execution.budget import measure_compute
from search.execution.data import load_study_data
from search.execution.local import run_local
from search.execution.objective import TrialContext
from search.execution.promotion import promotable_paused, promote_paused
from search.execution.study import open_study
from search.outcome import (
    CONTINUED_AFTER,
    CONTINUED_FROM,
    FIXED_PARAMS,
    PAUSED_STATE,
    STOP_REASON,
    continued_from,
    paused_state,
)
from search.pruning.cross_trial import CrossTrialRule
from search.report.data import load_study_record
from search.report.summary import summary_markdown
from search.report.tables import trials_frame
from search.spec.schema import StudySpec, load_spec
from search.spec.space import build_config
from search.store.engine import open_storage
from unet.fit import fit

optuna.logging.set_verbosity(optuna.logging.WARNING)

RULE = CrossTrialRule(rule="successive_halving", reduction_factor=3, pause=True)
LR = {"lr": FloatDistribution(1e-4, 1.0, log=True)}


def at_rung_0(value: float, *, reason: str | None = None, state_id: str | None = None, **attrs):
    """A finished trial that reached rung 0 (epoch 1) with val Dice ``value``; paused when given a reason."""
    user_attrs = dict(attrs)
    if reason is not None:
        user_attrs[STOP_REASON] = reason
    if state_id is not None:
        user_attrs[PAUSED_STATE] = state_id
    return create_trial(
        state=TrialState.PRUNED if reason else TrialState.COMPLETE,
        value=None if reason else value,
        params={"lr": 0.01},
        distributions=LR,
        intermediate_values={1: value},
        system_attrs={"completed_rung_0": value},
        user_attrs=user_attrs,
    )


# Others at rung 0 -> whether the trial paused there with val Dice 0.5 now goes on (top 1/3; the best
# alone while fewer than 6 trials reached the rung).
PROMOTIONS = [
    pytest.param([0.9], False, id="two-at-the-rung:-only-the-best"),
    pytest.param([0.9, 0.4, 0.3, 0.2], False, id="five:-still-only-the-best"),
    pytest.param([0.9, 0.4, 0.3, 0.2, 0.1], True, id="six:-the-top-two"),
    pytest.param([0.9, 0.8, 0.4, 0.3, 0.2], False, id="six:-third"),
    pytest.param([0.4], True, id="now-the-best"),
]


@pytest.mark.parametrize(("others", "promoted"), PROMOTIONS)
def test_a_paused_trial_goes_on_once_it_ranks_in_the_top_at_its_rung(others, promoted) -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(at_rung_0(0.5, reason="paused", state_id="s0"))
    for value in others:
        study.add_trial(at_rung_0(value))
    found = promotable_paused(study.get_trials(), RULE)
    assert [t.number for _, t in found] == ([0] if promoted else [])


def test_final_stops_and_continued_or_stateless_pauses_are_not_promoted() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(at_rung_0(0.5, reason="underperforming"))  # a final stop
    study.add_trial(at_rung_0(0.5, reason="paused"))  # its state was never kept
    study.add_trial(at_rung_0(0.5, reason="paused", state_id="s2"))
    study.add_trial(at_rung_0(0.6, reason="paused", state_id="s3"))
    study.add_trial(at_rung_0(0.9))
    assert [t.number for _, t in promotable_paused(study.get_trials(), RULE)] == []
    for value in (0.1, 0.1, 0.1, 0.1):
        study.add_trial(at_rung_0(value))
    # 9 at the rung: the top 3 go on (0.9, 0.6, 0.5), the paused ones best first; each is continued once.
    assert [t.number for _, t in promotable_paused(study.get_trials(), RULE)] == [3, 2]
    assert promote_paused(study, RULE) == 3
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [(t.system_attrs[FIXED_PARAMS], t.user_attrs) for t in waiting] == [
        ({"lr": 0.01}, {CONTINUED_FROM: 3, CONTINUED_AFTER: 1})
    ]
    assert promote_paused(study, RULE) == 2
    assert promote_paused(study, RULE) is None


def test_pause_is_for_successive_halving_only() -> None:
    with pytest.raises(ValueError, match="pause needs rule successive_halving"):
        CrossTrialRule(rule="median", pause=True)


def paused_smoke(artifacts: Path) -> StudySpec:
    data = load_spec("unet-smoke").to_dict()
    data.pop("source")
    data["pruning"] = {
        "plateau": {"warmup_epochs": 100, "patience": 1},  # never: only the cross-trial rule stops
        "cross_trial": {"rule": "successive_halving", "warmup_epochs": 0, "pause": True},
    }
    # Epoch 1 is rung 0; with 2 epochs rung 1 (epoch 3) is never reached.
    data["budget"] = {"n_trials": 2, "max_epochs": 2}
    data["baselines"] = [
        {"learning_rate": 1.0e-2, "optimizer": "adam"},
        {"learning_rate": 1.0e-3, "optimizer": "sgd"},  # slow at first: paused behind the first
    ]
    data["artifacts"] = {"path": str(artifacts), "keep_top_k": 2}
    return StudySpec.from_dict(data)


@pytest.mark.slow
def test_a_paused_trial_is_continued_as_if_never_stopped_and_its_state_swept(tmp_path: Path) -> None:
    spec = paused_smoke(tmp_path / "artifacts")
    storage = open_storage(f"sqlite:///{tmp_path / 'paused.db'}")
    try:
        study, _ = open_study(storage, spec)
        policy = CheckpointPolicy(str(tmp_path / "artifacts"), 2)
        ctx = TrialContext(spec=spec, storage=storage, data=load_study_data(spec), checkpoints=policy)
        run_local(study, ctx, n_trials=2)
        first, paused = study.get_trials()
        assert first.state == TrialState.COMPLETE
        assert (paused.state, paused.user_attrs[STOP_REASON]) == (TrialState.PRUNED, "paused")
        state_id = paused_state(paused)
        assert state_id is not None
        assert (tmp_path / "artifacts" / spec.name / state_id).is_file()

        # Four more trials at rung 0, all behind: six there now, and the paused one ranks second of them.
        for _ in range(4):
            study.add_trial(at_rung_0(0.0, reason="underperforming"))
        run_local(study, ctx, n_trials=7)
        continuation = study.get_trials()[-1]
        assert continued_from(continuation) == paused.number
        assert continuation.params == paused.params
        assert continuation.state == TrialState.COMPLETE

        # Only its own epochs: reported, stored, and counted as compute (2 + 1 + 1, the fakes trained none).
        epochs = ctx.epochs.read_epochs(spec.name)
        own = epochs[epochs["trial_number"] == continuation.number]
        assert list(own["epoch"]) == [2]
        assert list(continuation.intermediate_values) == [2]
        assert measure_compute(study, ctx.epochs, spec).spent == 4

        # Epoch 2 equals epoch 2 of the same parameters trained without a pause.
        config = build_config(
            spec, paused.params, in_channels=ctx.data.in_channels, num_classes=ctx.data.num_classes
        )
        straight = fit(config, ctx.data.train, ctx.data.val).history
        row = own.iloc[0]
        for name in ("train_loss", "val_loss", "val_dice"):
            assert row[name] == getattr(straight[1], name) or (
                math.isnan(row[name]) and math.isnan(getattr(straight[1], name))
            ), name
        assert continuation.value == max(r.val_dice for r in straight)

        # The continued state was removed; a kept checkpoint and nothing else remains.
        assert state_id not in {p.name for p in study_files(policy.location, spec.name) or []}

        # The report reads it as a pause, not a final stop: it saved nothing, and says it was continued.
        record = load_study_record(storage, spec.name)
        rows = trials_frame([record]).set_index("number")
        assert rows.loc[paused.number, "compute_saved_images"] == 0
        assert rows.loc[continuation.number, "continued_from"] == paused.number
        summary = summary_markdown(
            [record], trials_frame([record]), {}, {}, out_dir=tmp_path, storage_display="db"
        )
        assert "pruned: paused, then continued" in summary
    finally:
        storage.engine.dispose()


def test_paused_states_are_kept_while_needed_and_swept_when_the_run_ends(tmp_path: Path) -> None:
    spec = paused_smoke(tmp_path / "artifacts")
    storage = open_storage(f"sqlite:///{tmp_path / 'sweep.db'}")
    try:
        study, _ = open_study(storage, spec)
        folder = tmp_path / "artifacts" / spec.name
        folder.mkdir(parents=True)
        for name in ("state-a", "state-b", "stray"):
            (folder / name).write_bytes(b"x")
        study.add_trial(at_rung_0(0.5, reason="paused", state_id="state-a"))
        b = len(study.get_trials())  # the number of the next trial (the baselines wait before it)
        study.add_trial(at_rung_0(0.5, reason="paused", state_id="state-b"))
        # state-b's continuation finished: no one needs it any more.
        study.add_trial(at_rung_0(0.6, **{CONTINUED_FROM: b, CONTINUED_AFTER: 1}))
        policy = CheckpointPolicy(str(tmp_path / "artifacts"), 2)

        started = reconcile(storage, spec.name, policy)
        assert (started.swept, started.paused) == (("stray",), ("state-b",))
        assert sorted(p.name for p in folder.iterdir()) == ["state-a"]
        ended = reconcile(storage, spec.name, policy, keep_paused=False)
        assert (ended.swept, ended.paused) == ((), ("state-a",))
        assert list(folder.iterdir()) == []
    finally:
        storage.engine.dispose()
