"""The store under load: local workers started together fill one study's budget on each server.

Eight workers on a budget of 12 trials, 3 of them lost at the start (the benchmark, ``bench/store/``,
runs 16 on 32). All reap at the same instant from a start barrier, so a racing reaper retries a lost
trial twice; the budget is one and a half rounds of trials, so the eight, in step, claim its last four
slots at once, where a claim outside the study's claim lock overfills it (with 6 workers on 12 trials,
two whole rounds, a claim without the lock passed; 16 on 32 caught it, at twice the start-up cost).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from bench.store.load import budget_run
from search.store.location import StoreLocation

WORKERS = 8
N_TRIALS = 12  # one and a half rounds: the last round's claims race for fewer slots than workers


@pytest.mark.slow
@pytest.mark.db
@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_workers_started_together_fill_the_budget_exactly_and_retry_each_lost_trial_once(
    backend: str, fresh_database: Callable[[str], AbstractContextManager[str]]
) -> None:
    with fresh_database(backend) as url:
        result = budget_run(StoreLocation.parse(url), workers=WORKERS, n_trials=N_TRIALS, lost=3, epochs=2)
    assert result["errors"] == 0, result["error_examples"]
    assert (result["n_trials"], result["lost"], result["workers"]) == (N_TRIALS, 3, WORKERS)
