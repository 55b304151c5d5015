"""The store under load: 16 local workers started together fill one study's budget on each server."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from bench.store.load import budget_run
from search.store.location import StoreLocation


@pytest.mark.slow
@pytest.mark.db
@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_sixteen_workers_fill_the_budget_exactly_and_retry_each_lost_trial_once(
    backend: str, fresh_database: Callable[[str], AbstractContextManager[str]]
) -> None:
    with fresh_database(backend) as url:
        result = budget_run(StoreLocation.parse(url), workers=16, n_trials=32, lost=3, epochs=2)
    assert result["errors"] == 0, result["error_examples"]
    assert (result["n_trials"], result["lost"], result["workers"]) == (32, 3, 16)
