"""The Ray a run uses: a local instance of ours or a cluster joined, with Ray's output kept quiet.

A local Ray lives in a folder of ours, watched for the driver's death
(:mod:`search.execution.ray.leftovers`); what Ray itself prints to the driver's terminal is cut to what
the user must see: Tune's and Ray's logs are silenced (the progress line reports every trial's end), and
of the errors the cluster publishes to the driver, the lost-worker notices (the trial is reported as
``worker_lost``) go to this module's log at DEBUG instead of the terminal; any other error still prints.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import ray._private.worker as ray_worker

from search.execution.ray import leftovers
from search.execution.signals import sigterm_as_interrupt
from search.store.location import redact_url

logger = logging.getLogger(__name__)

# Ray and Tune settings that only exist as environment variables, set for the duration of a run:
# the legacy output engine (silent at verbose=0; the new one prints a banner even then), no SIGINT
# handler of Tune's (Ctrl-C must raise KeyboardInterrupt, as SIGTERM does), no per-trial CSV/JSON/
# TensorBoard files, and trials that keep the working directory they started in.
_RAY_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
}
# The cluster's error messages that only say a worker process died: the searcher already fails its
# trial as worker_lost, and the progress line says so.
LOST_WORKER_NOTICES = (
    "A worker died or was killed",
    "The actor is dead because its worker process has died",
)


class ClusterError(ValueError):
    """The Ray cluster cannot run the study: unreachable, or too small for one trial."""


@dataclass(frozen=True)
class RaySession:
    """The Ray of one run."""

    owned: bool  # this run initialised Ray (and shuts it down at the end)
    folder: Path | None  # the local Ray's folder of ours (Ray's logs, Tune's files); None: a joined cluster


@contextlib.contextmanager
def ray_session(address: str | None, *, verbose: bool) -> Iterator[RaySession]:
    """Connect to (or start) Ray for the block, with Ray's output quiet unless ``verbose``.

    A local Ray started here lives in a folder of ours, watched by a process that ends what the Ray
    leaves behind should this driver be killed; what earlier killed runs left is ended first. The
    folder, with Ray's logs, stays until the next local run.

    Raises:
        ClusterError: the cluster at ``address`` cannot be joined.
    """
    # ray.init also sets RAY_AUTH_MODE for this process: put that back too, with ours.
    saved_env = {key: os.environ.get(key) for key in (*_RAY_ENV, "RAY_AUTH_MODE")}
    os.environ.update(_RAY_ENV)
    owned = not ray.is_initialized()
    quiet = [logging.getLogger(name) for name in ("ray", "ray.tune")]
    levels = [log.level for log in quiet]
    folder, watchdog = None, None
    try:
        if owned and address is None:
            leftovers.end_dead_runs()
            folder = leftovers.make_ray_dir()
            watchdog = leftovers.start_watchdog(folder)
        if owned:
            _init(address, verbose=verbose, temp_dir=folder)
        if not verbose:
            # Tune logs every lost worker as an ERROR with its traceback; the progress line says it.
            for log in quiet:
                log.setLevel(logging.CRITICAL)
        # ray.init replaced the caller's SIGTERM handler with one that exits at once, which would leave
        # the running trials RUNNING until the next run reaps them: put ours back.
        with sigterm_as_interrupt(), _lost_workers_logged(enabled=not verbose):
            yield RaySession(owned=owned, folder=folder)
    finally:
        if owned and ray.is_initialized():
            ray.shutdown()
        if watchdog is not None:
            watchdog.terminate()
            watchdog.wait()
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _lost_workers_logged(*, enabled: bool) -> Iterator[None]:
    """Within the block, the cluster's lost-worker notices go to the log, not to the driver's stdout.

    Ray's driver prints every error the cluster publishes (``(raylet) A worker died ...``) from a thread
    of its own, through ``ray._private.worker.print_to_stdstream``, whatever ``log_to_driver`` says;
    that function is wrapped for the block. Other messages are printed as Ray prints them.
    """
    original: Callable[..., Any] | None = getattr(ray_worker, "print_to_stdstream", None)
    if not enabled or original is None:  # None: a Ray release without it prints as it does
        yield
        return

    def filtered(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        lines = [str(line) for line in data.get("lines", [])]
        shown = [line for line in lines if not any(notice in line for notice in LOST_WORKER_NOTICES)]
        for line in lines:
            if line not in shown:
                logger.debug("from %s: %s", data.get("pid"), line)
        if shown:
            original({**data, "lines": shown}, *args, **kwargs)

    ray_worker.print_to_stdstream = filtered
    try:
        yield
    finally:
        ray_worker.print_to_stdstream = original


def _init(address: str | None, *, verbose: bool, temp_dir: Path | None) -> None:
    """``ray.init`` a new local instance (``address`` None, its files in ``temp_dir``) or a connection."""
    kwargs: dict[str, Any] = {
        "log_to_driver": verbose,
        "logging_level": logging.INFO if verbose else logging.ERROR,
        "include_dashboard": False,
    }
    if address is None:
        # "local": a new instance even when a `ray start` cluster runs on this machine.
        ray.init(address="local", _temp_dir=str(temp_dir) if temp_dir else None, **kwargs)
        return
    kwargs.pop("include_dashboard")
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ClusterError(
            f"cannot join the Ray cluster at {redact_url(address)!r}: {first}: check --address "
            f"(`ray status` on the head node shows it), or leave it out to start Ray on this machine"
        ) from e
