"""Promotions: a paused trial is continued once it ranks in the top at its rung (ASHA's promotion).

Under ``pruning.cross_trial.pause`` successive halving pauses a trial where it would have stopped it
(stop reason ``paused``, its last epoch's state in the artifact store: ``search.checkpoints.paused``).
As more trials reach that rung, the share that goes on grows (the top 1/reduction_factor of more
trials), so a trial that fell short when it was judged may rank later. Before every new trial the
backend asks :func:`promote_paused` (``search.execution.scheduling.claim_next``, under the study's claim
lock): the best paused trial that would now be promoted is enqueued again with its parameters and
``continued_from`` / ``continued_after`` (``search.outcome.continuation_attrs``), and that trial trains
on from the paused state (``search.execution.objective``). In Optuna's vocabulary the paused trial stays
PRUNED and the continuation is a new trial that reports, and is counted for, only its own epochs.
"""

from __future__ import annotations

import logging

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.outcome import PAUSED, continuation_attrs, continued_from, paused_state, stop_reason
from search.pruning.cross_trial import RUNG_PREFIX, CrossTrialRule, promotable, rung_values
from search.ranking import rank_key

logger = logging.getLogger(__name__)


def promotable_paused(trials: list[FrozenTrial], rule: CrossTrialRule) -> list[tuple[float, FrozenTrial]]:
    """The paused trials, not yet continued, that now rank in the top 1/reduction_factor at the rung they
    were paused at, best first, each with its val Dice there."""
    continued = {origin for t in trials if (origin := continued_from(t.user_attrs)) is not None}
    found = []
    for trial in trials:
        if trial.state != TrialState.PRUNED or stop_reason(trial.user_attrs) != PAUSED:
            continue
        if paused_state(trial.user_attrs) is None or trial.number in continued:
            continue
        rungs = rung_values(trial.system_attrs)
        if not rungs:
            continue
        rung = max(rungs)
        key = f"{RUNG_PREFIX}{rung}"
        values = [float(t.system_attrs[key]) for t in trials if key in t.system_attrs]
        if promotable(rungs[rung], values, rule.reduction_factor):
            found.append((rungs[rung], trial))
    return sorted(found, key=lambda pair: rank_key(pair[0], pair[1].number))


def promote_paused(study: optuna.Study, rule: CrossTrialRule) -> int | None:
    """Enqueue the continuation of the best promotable paused trial; returns its number, or None.

    Call it under the study's claim lock, just before the next ``ask``: the continuation is then the
    trial that ask starts (after any baselines and retries enqueued before it).
    """
    found = promotable_paused(study.get_trials(deepcopy=False), rule)
    if not found:
        return None
    value, trial = found[0]
    epoch = trial.last_step or 0
    study.enqueue_trial(dict(trial.params), user_attrs=continuation_attrs(trial.number, epoch))
    logger.info(
        "trial %d is continued after epoch %d: its val Dice %.3f now ranks at its rung",
        trial.number,
        epoch,
        value,
    )
    return trial.number
