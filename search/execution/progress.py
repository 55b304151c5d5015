"""What a run shows: a live progress line while trials run, and the summary at the end."""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.execution.study import Counts, count_trials
from search.outcome import BEST_EPOCH, DIAGNOSIS, STOP_REASON, TrialOutcome
from unet.history import EpochRecord


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m{s:02d}s" if hours else f"{m}m{s:02d}s"


class Progress:
    """Trials done / pruned / failed, best Dice so far, elapsed and estimated remaining time.

    On a terminal the line is redrawn after every epoch; elsewhere (logs, CI) one line is printed per
    finished trial.
    """

    def __init__(
        self,
        study: optuna.Study,
        *,
        n_trials: int,
        timeout: float | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.study = study
        self.n_trials = n_trials
        self.timeout = timeout
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.start_counts = count_trials(study)

    def on_epoch(self, trial: optuna.Trial, record: EpochRecord) -> None:
        if self.live:
            detail = f"trial {trial.number} epoch {record.epoch}: val Dice {record.val_dice:.3f}"
            self._write(self._line(count_trials(self.study), detail), end="\r")

    def on_trial(self, trial: FrozenTrial, outcome: TrialOutcome, counts: Counts) -> None:
        state = outcome.state.name.lower()
        why = f" ({outcome.reason})" if outcome.reason else ""
        detail = f"trial {trial.number} {state}{why}: {outcome.message or ''}"
        self._write(self._line(counts, detail), end="\n")

    def _line(self, counts: Counts, detail: str) -> str:
        elapsed = time.monotonic() - self.started
        done_here = counts.finished - self.start_counts.finished
        remaining = "?"
        if done_here > 0:
            left = max(self.n_trials - counts.finished, 0)
            estimate = elapsed / done_here * left
            if self.timeout is not None:
                estimate = min(estimate, max(self.timeout - elapsed, 0))
            remaining = format_duration(estimate)
        best = _best(self.study)
        best_text = f"best Dice {best.value:.4f} (#{best.number})" if best else "best Dice -"
        return (
            f"[{counts.finished}/{self.n_trials}] {counts.complete} complete, {counts.pruned} pruned, "
            f"{counts.failed} failed | {best_text} | {format_duration(elapsed)} elapsed, ~{remaining} left | "
            f"{detail}"
        )

    def _write(self, text: str, *, end: str) -> None:
        if self.live:
            width = 160
            text = text[:width].ljust(width) if end == "\r" else "\r" + text.ljust(width)
        print(text, end=end, file=self.stream, flush=True)


def _best(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    scored = [t for t in complete if t.value is not None and math.isfinite(t.value)]
    return max(scored, key=lambda t: (t.value, -t.number), default=None)


def summary(study: optuna.Study, *, n_trials: int, storage_display: str, top: int = 5) -> str:
    """The end-of-run text: best trial, top trials, stop reasons and diagnoses, where things are.

    ``storage_display`` is the store's URL without its password (``redact_url``): it is shown, and
    it is the ``--storage`` of the dashboard and report commands printed (with the password left out,
    they take it from ``$UNET_SEARCH_STORAGE``).
    """
    trials = study.get_trials(deepcopy=False)
    counts = count_trials(study)
    lines = [
        f"Study {study.study_name}: {counts.finished} of {n_trials} trials finished "
        f"({counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed"
        + (f", {counts.retryable} lost or interrupted and retried" if counts.retryable else "")
        + ")",
    ]
    best = _best(study)
    if best is None:
        lines.append("No trial completed yet.")
    else:
        lines.append(
            f"Best trial #{best.number}: val Dice {best.value:.4f} at epoch "
            f"{best.user_attrs.get(BEST_EPOCH, '?')}"
        )
        lines += [f"    {k} = {_fmt(v)}" for k, v in best.params.items()]
        ranked = sorted(
            (t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
            key=lambda t: (-(t.value or 0.0), t.number),  # every value is set (filtered above)
        )[:top]
        lines.append(f"Top {len(ranked)}:")
        for t in ranked:
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
            lines.append(f"    #{t.number:<4} {t.value:.4f}  {params}  [{t.user_attrs.get(DIAGNOSIS, '-')}]")
    reasons = Counter(t.user_attrs[STOP_REASON] for t in trials if STOP_REASON in t.user_attrs)
    if reasons:
        lines.append("Stopped early: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())))
    diagnoses = Counter(t.user_attrs[DIAGNOSIS] for t in trials if DIAGNOSIS in t.user_attrs)
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
