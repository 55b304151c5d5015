"""``diagnose``: one label, one line, the numbers and the advice, for a trial's recorded history.

A pure function of the per-epoch rows (``unet.history.EPOCH_FIELDS``) and the trial's settings. The rules
(``training``, ``data``, ``generalisation``) each return a clear or a borderline finding, checked in the
order of :data:`search.diagnosis.labels.CAUSES`; a cause early in the list explains the symptoms of later
ones (unnormalised inputs make a run stall; masks that do not match make validation fall as in
overfitting), so:

1. diverged (a NaN/inf loss, a loss far above its start, or a trial stopped as diverged) decides alone;
2. otherwise the first clear finding wins, unless a borderline finding comes before it: then the
   diagnosis is ``unclear`` between the two;
3. only borderline findings: ``unclear`` between the two closest (the second is ``healthy`` when there
   is only one);
4. nothing found: ``healthy``.

A wrong confident label is worse than an honest "unclear". Short histories: a single epoch can only show
divergence; trend rules need ``MIN_TREND_EPOCHS`` epochs. A NaN val Dice counts as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from search.diagnosis.advice import lower_learning_rate
from search.diagnosis.curves import MIN_TREND_EPOCHS, Curves, base_evidence, fall, read_curves
from search.diagnosis.data import background_only, foreground_flood, input_scale, no_signal
from search.diagnosis.generalisation import overfitting
from search.diagnosis.labels import CAUSES, Diagnosis, Finding
from search.diagnosis.training import (
    DIVERGED_FIX,
    diverged,
    stalled,
    underfitting,
    unstable,
    vanishing_gradients,
)

Rule = Callable[[Curves], Finding | None]
# In the order of CAUSES (after "diverged", which is decided first).
RULES: tuple[Rule, ...] = (
    input_scale,
    vanishing_gradients,
    stalled,
    no_signal,
    background_only,
    foreground_flood,
    unstable,
    overfitting,
    underfitting,
)


def diagnose(
    history: Sequence[Mapping[str, Any]],
    *,
    params: Mapping[str, Any] | None = None,
    stop_reason: str | None = None,
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

    Returns:
        The diagnosis with its evidence and suggested changes.

    Raises:
        ValueError: ``history`` is empty (a trial that never finished an epoch has nothing to diagnose).
    """
    if len(history) == 0:
        raise ValueError("history is empty: a diagnosis needs at least one finished epoch")
    curves = read_curves(history, params or {})
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
    return _decide(findings, curves, base)


def _decide(findings: list[Finding], c: Curves, base: dict[str, float | int | str]) -> Diagnosis:
    clear = next((f for f in findings if f.clear), None)
    if clear is not None:
        before = [f for f in findings if not f.clear and _order(f) < _order(clear)]
        if not before:
            return clear.diagnosis(base)
        return _unclear(before[0], clear, base)
    if findings:
        ranked = sorted(findings, key=lambda f: -f.closeness)
        second = ranked[1] if len(ranked) > 1 else None
        return _unclear(ranked[0], second, base, healthy=_healthy_text(c))
    return _healthy(c, base)


def _order(finding: Finding) -> int:
    return CAUSES.index(finding.label)


def _unclear(
    first: Finding, second: Finding | None, base: dict[str, float | int | str], *, healthy: str = ""
) -> Diagnosis:
    other = second.label if second is not None else "healthy"
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
    if c.n < MIN_TREND_EPOCHS:
        summary += f"; too few epochs to judge trends (need {MIN_TREND_EPOCHS})"
    return Diagnosis("healthy", summary, base | {"val_decrease": fall(c.val[0], float(c.val[-1]))})
