"""The Ray session's output filter: lost-worker notices go to the log, other cluster errors still print."""

from __future__ import annotations

import logging

import ray._private.worker as ray_worker

from search.execution.ray import session

WORKER_DIED = (
    "A worker died or was killed while executing a task by an unexpected system error. To troubleshoot "
    "the problem, check the logs for the dead worker. Worker ID: 5935"
)
OUT_OF_MEMORY = "Task was killed due to the node running low on memory."


def test_lost_worker_notices_are_logged_and_other_errors_printed(monkeypatch, caplog):
    printed: list[dict] = []
    monkeypatch.setattr(ray_worker, "print_to_stdstream", lambda data, **kw: printed.append(data))
    caplog.set_level(logging.DEBUG, logger=session.__name__)
    with session._lost_workers_logged(enabled=True):
        # As Ray's error thread calls it: the module attribute, looked up at each call.
        ray_worker.print_to_stdstream({"lines": [WORKER_DIED], "pid": "raylet"}, ignore_prefix=False)
        both = {"lines": [OUT_OF_MEMORY, WORKER_DIED], "pid": "raylet"}
        ray_worker.print_to_stdstream(both, ignore_prefix=False)
    assert printed == [{"lines": [OUT_OF_MEMORY], "pid": "raylet"}]
    assert [r.getMessage() for r in caplog.records] == [f"from raylet: {WORKER_DIED}"] * 2
    ray_worker.print_to_stdstream({"lines": [WORKER_DIED], "pid": "raylet"}, ignore_prefix=False)
    assert printed[-1] == {"lines": [WORKER_DIED], "pid": "raylet"}  # Ray's own again after the block


def test_verbose_leaves_ray_printing_everything(monkeypatch):
    printed: list[dict] = []
    monkeypatch.setattr(ray_worker, "print_to_stdstream", lambda data, **kw: printed.append(data))
    with session._lost_workers_logged(enabled=False):
        ray_worker.print_to_stdstream({"lines": [WORKER_DIED], "pid": "raylet"}, ignore_prefix=False)
    assert printed == [{"lines": [WORKER_DIED], "pid": "raylet"}]
