"""What a run shows: a live progress line while trials run, and the summary at the end."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.execution.budget import Compute
from search.execution.study import Counts, count_trials
from search.outcome import FOLD_VAL_DICE, TrialOutcome, diagnosis, stop_reason, stored_test_scores
from search.ranking import best_epoch, best_trial, rank_trials, trial_score
from unet.history import EpochRecord


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m{s:02d}s" if hours else f"{m}m{s:02d}s"


class Progress:
    """Compute spent of the budget, trials done / pruned / failed, best Dice so far, elapsed and time left.

    On a terminal the line is redrawn after every epoch; elsewhere (logs, CI) one line is printed per
    finished trial. The time left is estimated in epochs, so that it exists from the first epoch on and does
    not jump when a trial ends: seconds per epoch trained in this run (the epochs of running trials
    included, read from their intermediate values) times the epochs still to come. Under a compute budget
    (``compute``, measured by :func:`search.execution.budget.measure_compute`) those are the budget's
    epochs not spent yet; under a cap of ``n_trials`` they are what running trials lack of the epochs a
    trial takes on average, plus that average for every trial not started yet; under both, the fewer.
    """

    def __init__(
        self,
        study: optuna.Study,
        *,
        n_trials: int | None,
        max_epochs: int,
        timeout: float | None = None,
        compute: Callable[[], Compute] | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.study = study
        self.n_trials = n_trials
        self.compute = compute
        self.max_epochs = max_epochs
        self.timeout = timeout
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.clock = clock
        self.started = clock()
        self.start_counts = count_trials(study)
        self.start_epochs = _epochs_trained(study.get_trials(deepcopy=False))
        # Epochs seen by on_epoch, which runs before the epoch is reported to the study.
        self._seen: dict[int, int] = {}

    def on_epoch(self, trial: optuna.Trial, record: EpochRecord) -> None:
        self._seen[trial.number] = record.epoch
        if self.live:
            detail = f"trial {trial.number} epoch {record.epoch}: val Dice {record.val_dice:.3f}"
            self._write(self._line(count_trials(self.study), detail), end="\r")

    def on_trial(self, trial: FrozenTrial, outcome: TrialOutcome, counts: Counts) -> None:
        state = outcome.state.name.lower()
        why = f" ({outcome.reason})" if outcome.reason else ""
        detail = f"trial {trial.number} {state}{why}: {outcome.message or ''}"
        self._write(self._line(counts, detail), end="\n")

    def remaining_seconds(self, counts: Counts, spent: Compute | None = None) -> float | None:
        """The estimated seconds until the budget is spent (``spent``: the compute measured now, under a
        compute budget); None before any epoch or without any limit."""
        elapsed = self.clock() - self.started
        trials = self.study.get_trials(deepcopy=False)
        done = {t.number: max(len(t.intermediate_values), self._seen.get(t.number, 0)) for t in trials}
        trained_here = sum(done.values()) - self.start_epochs
        if trained_here <= 0 or elapsed <= 0:
            return None
        finished = [t for t in trials if t.state in _FINISHED and t.intermediate_values]
        per_trial = (
            sum(len(t.intermediate_values) for t in finished) / len(finished) if finished else self.max_epochs
        )
        running = [t for t in trials if t.state == TrialState.RUNNING]
        lefts = []
        if self.n_trials is not None:
            by_trials = sum(max(per_trial - done[t.number], 0.0) for t in running)
            lefts.append(by_trials + max(self.n_trials - counts.finished - len(running), 0) * per_trial)
        if spent is not None and spent.left is not None:
            lefts.append(spent.left)
        if not lefts:
            return None if self.timeout is None else max(self.timeout - elapsed, 0)
        estimate = elapsed / trained_here * min(lefts)
        if self.timeout is not None:
            estimate = min(estimate, max(self.timeout - elapsed, 0))
        return estimate

    def _line(self, counts: Counts, detail: str) -> str:
        elapsed = self.clock() - self.started
        spent = self.compute() if self.compute is not None else None
        estimate = self.remaining_seconds(counts, spent)
        remaining = "?" if estimate is None else format_duration(estimate)
        best = best_trial(self.study.get_trials(deepcopy=False))
        best_text = f"best Dice {trial_score(best) or 0.0:.4f} (#{best.number})" if best else "best Dice -"
        return (
            f"[{_standing(counts, self.n_trials, spent)}] {counts.complete} complete, "
            f"{counts.pruned} pruned, "
            f"{counts.failed} failed | {best_text} | {format_duration(elapsed)} elapsed, ~{remaining} left | "
            f"{detail}"
        )

    def _write(self, text: str, *, end: str) -> None:
        if self.live:
            width = 160
            text = text[:width].ljust(width) if end == "\r" else "\r" + text.ljust(width)
        print(text, end=end, file=self.stream, flush=True)


def _standing(counts: Counts, n_trials: int | None, spent: Compute | None) -> str:
    """``compute 4.2/16, 9 trials`` under a compute budget (full trials), ``9/16`` under a cap of trials."""
    plural = "" if counts.finished == 1 and n_trials is None else "s"
    if spent is None or spent.budget is None:
        return f"{counts.finished}/{n_trials}" if n_trials is not None else f"{counts.finished} trial{plural}"
    of = f"/{n_trials}" if n_trials is not None else ""
    trials = f"{counts.finished}{of} trial{plural}"
    return f"compute {spent.spent_trials:.1f}/{spent.budget / spent.trial_epochs:g}, {trials}"


# Trials whose epoch count tells how long a trial takes (a lost or interrupted one stopped for other reasons).
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _epochs_trained(trials: list[FrozenTrial]) -> int:
    """Epochs the trials have reported (one intermediate value per epoch)."""
    return sum(len(t.intermediate_values) for t in trials)


def summary(
    study: optuna.Study,
    *,
    n_trials: int | None,
    storage_display: str,
    top: int = 5,
    spent: Compute | None = None,
) -> str:
    """The end-of-run text: trials and compute spent, best trial, top trials, stop reasons and diagnoses,
    where things are.

    ``spent`` is the study's compute (:func:`search.execution.budget.measure_compute`), shown when given.

    ``storage_display`` is the store's URL without its password (``redact_url``): it is shown, and
    it is the ``--storage`` of the dashboard and report commands printed (with the password left out,
    they take it from ``$UNET_SEARCH_STORAGE``).
    """
    trials = study.get_trials(deepcopy=False)
    counts = count_trials(study)
    of_trials = f" of {n_trials}" if n_trials is not None else ""
    lines = [
        f"Study {study.study_name}: {counts.finished}{of_trials} trials finished "
        f"({counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed"
        + (f", {counts.retryable} lost or interrupted and retried" if counts.retryable else "")
        + ")"
        + (f"; compute spent: {spent.describe()}" if spent is not None else ""),
    ]
    ranked = rank_trials(trials)  # the winner first, by the rule every command shares (search.ranking)
    if not ranked:
        lines.append("No trial has trained yet.")
    else:
        best = ranked[0]
        value = trial_score(best) or 0.0
        epoch = best_epoch(best)
        folds = best.user_attrs.get(FOLD_VAL_DICE) if best.state == TrialState.COMPLETE else None
        if folds:
            lines.append(
                f"Best trial #{best.number}: val Dice {value:.4f}, the mean of {len(folds)} folds "
                f"({', '.join(f'{v:.4f}' for v in folds)}; fold 1's best epoch {epoch or '?'})"
            )
        else:
            state = (
                ""
                if best.state == TrialState.COMPLETE
                else f" ({best.state.name.lower()}: {stop_reason(best)})"
            )
            lines.append(f"Best trial #{best.number}: val Dice {value:.4f} at epoch {epoch or '?'}{state}")
        tested = stored_test_scores(study)
        if str(best.number) in tested:
            score = tested[str(best.number)]
            lines.append(
                f"    held-out test Dice {score['test_dice']:.4f} on {score['images']} image(s) "
                f"(val - test = {value - score['test_dice']:+.4f})"
            )
        lines += [f"    {k} = {_fmt(v)}" for k, v in best.params.items()]
        lines.append(f"Top {len(ranked[:top])}:")
        for t in ranked[:top]:
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
            test = tested.get(str(t.number))
            test_text = f" (test {test['test_dice']:.4f})" if test else ""
            pruned = "" if t.state == TrialState.COMPLETE else f" {t.state.name.lower()}"
            label = diagnosis(t) or "-"
            lines.append(
                f"    #{t.number:<4} {trial_score(t) or 0.0:.4f}{test_text}  {params}  [{label}]{pruned}"
            )
    reasons = Counter(r for t in trials if (r := stop_reason(t)) is not None)
    if reasons:
        lines.append("Stopped early: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())))
    diagnoses = Counter(d for t in trials if (d := diagnosis(t)) is not None)
    if diagnoses:
        lines.append("Diagnoses: " + ", ".join(f"{n} {d}" for d, n in sorted(diagnoses.items())))
    lines += [
        f"Store: {storage_display}",
        f"Dashboard: python -m search.dashboard --storage {storage_display}",
        f"Report: python -m search.report --study {study.study_name} --storage {storage_display}",
        f"Epochs table (SQL): SELECT * FROM unet_search_epochs WHERE study_name = '{study.study_name}'",
    ]
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
