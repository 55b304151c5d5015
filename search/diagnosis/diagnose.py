"""``diagnose``: one label, one line, the numbers and the advice, for a trial's recorded history.

A pure function of the per-epoch rows (``unet.history.EPOCH_FIELDS``), the trial's settings and, when
given, the study's other trials at equal epochs (``peers``). The rules (``training``, ``data``,
``generalisation``, ``comparison``) each return a clear or a borderline finding, checked in the
order of :data:`search.diagnosis.labels.CAUSES`; a cause early in the list explains the symptoms of later
ones (unnormalised inputs make a run stall; masks that do not match make validation fall as in
overfitting), so:

1. diverged (a NaN/inf loss, a loss far above its start, a val loss 100x the untrained model's or the
   study's median first-epoch one, or a trial stopped as diverged) decides alone;
2. otherwise the first clear finding wins, unless a borderline finding comes before it: then the
   diagnosis is ``unclear`` between the two;
3. only borderline findings: ``unclear`` between the two closest (the second is ``healthy``, or
   ``too_early`` for a short history, when there is only one);
4. nothing found: ``healthy`` after ``MIN_TREND_EPOCHS`` epochs, ``too_early`` before (with what was
   seen, the epoch and why it stopped: a label needs the evidence it names).

A wrong confident label is worse than an honest "unclear". Short histories: a single epoch can only show
divergence, or a val Dice at chance where the other trials learned; trend rules need
``MIN_TREND_EPOCHS`` epochs. A NaN val Dice counts as 0.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from search.diagnosis.advice import lower_learning_rate
from search.diagnosis.comparison import behind_peers
from search.diagnosis.curves import MIN_TREND_EPOCHS, Curves, base_evidence, fall, read_curves
from search.diagnosis.data import (
    background_only,
    constant_floor,
    foreground_flood,
    input_scale,
    no_signal,
)
from search.diagnosis.generalisation import overfitting
from search.diagnosis.labels import CAUSES, Diagnosis, Finding
from search.diagnosis.peers import Peers
from search.diagnosis.training import (
    DIVERGED_FIX,
    diverged,
    stalled,
    underfitting,
    unstable,
    vanishing_gradients,
)
from search.outcome import HEALTHY, TOO_EARLY

Rule = Callable[[Curves], Finding | None]
# In the order of CAUSES (after "diverged", which is decided first).
RULES: tuple[Rule, ...] = (
    input_scale,
    vanishing_gradients,
    stalled,
    no_signal,
    background_only,
    constant_floor,
    foreground_flood,
    unstable,
    overfitting,
    underfitting,
    behind_peers,
)


def diagnose(
    history: Sequence[Mapping[str, Any]],
    *,
    params: Mapping[str, Any] | None = None,
    stop_reason: str | None = None,
    peers: Peers | None = None,
) -> Diagnosis:
    """Label a trial's training run, say why its loss did (not) decrease and what to change.

    Args:
        history: one row per epoch, in order, with the keys of ``unet.history.EPOCH_FIELDS`` (missing
            or None values are read as NaN, i.e. unknown).
        params: the trial's settings, flat (``{"learning_rate": ..., "model.norm": ...}``) or nested as
            ``TrainConfig.to_dict()``; the rules read the learning rate, optimizer, loss, pos_weight,
            normalisation and filters from it, and the advice is given as changes to them.
        stop_reason: why the trial was stopped, if it was; a trial stopped as "diverged" (e.g. on a loss
            far above the initial step's, which the per-epoch curves cannot show) is diagnosed so.
        peers: the study's other trials at equal epochs (``Peers.from_epochs``): a val loss far above
            their median first-epoch one is ``diverged``, a val Dice at chance where they learned is
            ``behind_peers``. None: the trial is judged alone.

    Returns:
        The diagnosis with its evidence and suggested changes.

    Raises:
        ValueError: ``history`` is empty (a trial that never finished an epoch has nothing to diagnose).
    """
    if len(history) == 0:
        raise ValueError("history is empty: a diagnosis needs at least one finished epoch")
    curves = read_curves(history, params or {}, peers=peers)
    base = base_evidence(curves)
    found = diverged(curves)
    if found is not None:
        return found.diagnosis(base)
    if stop_reason == "diverged":
        seen = f"the trial was stopped as diverged at epoch {curves.n}{curves.lr_text}"
        return Diagnosis(
            "diverged",
            f"diverged: {seen}: {DIVERGED_FIX}",
            base | {"stop_reason": "diverged"},
            lower_learning_rate(curves, 10),
        )
    findings = [f for f in (rule(curves) for rule in RULES) if f is not None]
    return _decide(findings, curves, base, stop_reason)


def _decide(
    findings: list[Finding], c: Curves, base: dict[str, float | int | str], stop_reason: str | None
) -> Diagnosis:
    clear = next((f for f in findings if f.clear), None)
    if clear is not None:
        before = [f for f in findings if not f.clear and _order(f) < _order(clear)]
        if not before:
            return clear.diagnosis(base)
        return _unclear(before[0], clear, base)
    if findings:
        ranked = sorted(findings, key=lambda f: -f.closeness)
        second = ranked[1] if len(ranked) > 1 else None
        return _unclear(ranked[0], second, base, healthy=_healthy_text(c), short=c.n < MIN_TREND_EPOCHS)
    if c.n < MIN_TREND_EPOCHS:
        return _too_early(c, base, stop_reason)
    return _healthy(c, base)


def _order(finding: Finding) -> int:
    return CAUSES.index(finding.label)


def _unclear(
    first: Finding,
    second: Finding | None,
    base: dict[str, float | int | str],
    *,
    healthy: str = "",
    short: bool = False,
) -> Diagnosis:
    other = second.label if second is not None else (TOO_EARLY if short else HEALTHY)
    other_seen = second.seen if second is not None else healthy
    summary = (
        f"unclear: {first.label} or {other}: {first.seen}; {other_seen}: if {first.label}: {first.advice}"
    )
    evidence = base | dict(first.evidence) | {"closest": first.label, "second": other}
    return Diagnosis("unclear", summary, evidence, dict(first.changes), (first.label, other))


def _healthy_text(c: Curves) -> str:
    fell = fall(c.val[0], float(c.val[-1]))
    change = -fell if fell else 0.0  # not "-0%"
    epochs = f"{c.n} epoch" + ("s" if c.n > 1 else "")
    return (
        f"val loss went from {c.val[0]:.3g} to {c.val[-1]:.3g} ({change:+.0%}) in {epochs}, best val "
        f"Dice {c.dice.max():.3f} at epoch {int(c.dice.argmax()) + 1}"
    )


def _healthy(c: Curves, base: dict[str, float | int | str]) -> Diagnosis:
    summary = f"healthy: {_healthy_text(c)}"
    return Diagnosis("healthy", summary, base | {"val_decrease": fall(c.val[0], float(c.val[-1]))})


def _too_early(c: Curves, base: dict[str, float | int | str], stop_reason: str | None) -> Diagnosis:
    """Fewer epochs than a trend needs and nothing wrong yet: what was seen, where it stopped, and how it
    compares with the other trials at the same epoch."""
    stopped = f"stopped as {stop_reason} at epoch {c.n}" if stop_reason else f"ended at epoch {c.n}"
    others = c.peers.dice_at(c.n)
    compared = ""
    evidence = base | {"stop_reason": stop_reason or "", "min_trend_epochs": MIN_TREND_EPOCHS}
    if others:
        median = float(statistics.median(others))
        compared = f", the other {len(others)} trials' median val Dice at epoch {c.n} {median:.3f}"
        evidence |= {"peer_median_dice": median, "peers": len(others)}
    summary = (
        f"too_early: {stopped}: {_healthy_text(c)}{compared}; nothing wrong yet, but {MIN_TREND_EPOCHS} "
        "epochs are needed to judge the trends"
    )
    return Diagnosis(TOO_EARLY, summary, evidence)
