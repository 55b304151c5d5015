"""The replay table: every configuration of a ``Task`` trained in full once, with its learning curves.

Built with ``unet.fit.fit`` in worker processes (one thread each) and cached as JSON under
``CACHE/table-<key>.json``, where the key hashes the torch version and the task's settings (for a folder
task, its files' contents): change any of them and the table is built again; otherwise every later run
replays the same curves. The key leaves out the ``unet/`` sources, which several people edit all day while
a rebuild takes minutes to tens of minutes on a shared CPU: the table records the digest of the sources
it was built with (``Table.sources``) and the report says when they differ from the current ones (delete
the file to rebuild). Rows are appended to ``table-<key>.partial.jsonl`` as they finish, so an
interrupted build resumes. Non-finite losses are stored as null.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import torch

from bench.efficiency.task import Task

logger = logging.getLogger(__name__)

UNET_DIR = Path(__file__).resolve().parents[2] / "unet"


@dataclass(frozen=True)
class Row:
    """One fully trained configuration: its parameters and per-epoch curves (epochs 1..len)."""

    params: dict[str, Any]
    val_loss: tuple[float, ...]  # NaN where the loss was not finite
    val_dice: tuple[float, ...]
    train_images: tuple[int, ...]  # images trained in each epoch (fewer in an epoch cut by divergence)
    stop_reason: str | None  # "diverged" when fit stopped it early, else None
    seconds: float  # wall time of the whole fit (for the record; never used as compute)

    @property
    def best_dice(self) -> float:
        """The full-length Dice: the best epoch's, which is the trial's value in the service."""
        finite = [d for d in self.val_dice if math.isfinite(d)]
        return max(finite, default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "val_loss": [v if math.isfinite(v) else None for v in self.val_loss],
            "val_dice": [v if math.isfinite(v) else None for v in self.val_dice],
            "train_images": list(self.train_images),
            "stop_reason": self.stop_reason,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        def floats(values: list[float | None]) -> tuple[float, ...]:
            return tuple(math.nan if v is None else float(v) for v in values)

        return cls(
            params=dict(data["params"]),
            val_loss=floats(data["val_loss"]),
            val_dice=floats(data["val_dice"]),
            train_images=tuple(int(v) for v in data["train_images"]),
            stop_reason=data["stop_reason"],
            seconds=float(data["seconds"]),
        )


@dataclass(frozen=True)
class Table:
    """All rows of a task, in ``task.grid()`` order, with the key they were cached under."""

    task: Task
    key: str
    rows: tuple[Row, ...]
    build_seconds: float  # wall time of the build (when cached: of the build that made the cache)
    cached: bool  # True when this run read the table from the cache
    sources: str = ""  # digest of the unet/ sources the table was built with (sources_digest)

    @property
    def best_dice(self) -> float:
        return max(row.best_dice for row in self.rows)

    def top_threshold(self, share: float = 0.1) -> float:
        """The full-length Dice a row needs to be in the best ``share`` of rows (at least one row)."""
        ranked = sorted((row.best_dice for row in self.rows), reverse=True)
        return ranked[max(math.ceil(share * len(ranked)) - 1, 0)]


def sources_digest() -> str:
    """A hash of the ``unet/`` sources (the training code a table's curves come from)."""
    digest = hashlib.sha256()
    for path in sorted(UNET_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(UNET_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def table_key(task: Task) -> str:
    """A hash of the torch version and the task's settings (for a folder task: its files' contents)."""
    digest = hashlib.sha256()
    digest.update(torch.__version__.encode())
    digest.update(json.dumps(task.to_dict(), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def load_or_build(
    task: Task,
    cache_dir: Path,
    *,
    workers: int = 2,
    on_row: Callable[[int, int], None] | None = None,
    pool: Pool | None = None,
) -> Table:
    """The task's table from ``cache_dir`` if its key is there, else built (and saved there).

    Args:
        task: the task whose grid is trained.
        cache_dir: where ``table-<key>.json`` files live; created if missing.
        workers: training processes (each uses one thread).
        on_row: called with (rows done, rows in all) as rows finish, e.g. for progress lines.
        pool: spawned processes started with :func:`init_worker` to train in (None: ``workers`` new ones).
    """
    key = table_key(task)
    path = cache_dir / f"table-{key}.json"
    if path.is_file():
        data = json.loads(path.read_text())
        rows = tuple(Row.from_dict(r) for r in data["rows"])
        logger.info("replay table %s read from the cache (%d rows)", key, len(rows))
        sources = str(data.get("unet_sources", ""))
        return Table(task, key, rows, float(data["build_seconds"]), cached=True, sources=sources)
    started = time.perf_counter()
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f"table-{key}.partial.jsonl"
    rows = build_rows(task, workers=workers, on_row=on_row, partial=partial, pool=pool)
    seconds = time.perf_counter() - started
    payload = {
        "key": key,
        "task": task.to_dict(),
        "torch": torch.__version__,
        "unet_sources": sources_digest(),
        "build_seconds": round(seconds, 1),
        "rows": [row.to_dict() for row in rows],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, allow_nan=False) + "\n")
    tmp.replace(path)  # a half-written file never looks like a cached table
    partial.unlink(missing_ok=True)
    return Table(task, key, rows, seconds, cached=False, sources=sources_digest())


def build_rows(
    task: Task,
    *,
    workers: int = 2,
    on_row: Callable[[int, int], None] | None = None,
    partial: Path | None = None,
    pool: Pool | None = None,
) -> tuple[Row, ...]:
    """Train every configuration of the grid; rows come back in grid order.

    With ``partial``, each finished row is appended there as one JSON line (index and row), and rows
    already there are not trained again: an interrupted build resumes where it stopped. Training runs in
    ``pool`` (spawned processes started with :func:`init_worker`), else in ``workers`` new processes.
    """
    grid = task.grid()
    rows: list[Row | None] = [None] * len(grid)
    for index, row in _read_partial(partial, grid):
        rows[index] = row
    jobs = [(index, (task, params)) for index, params in enumerate(grid) if rows[index] is None]
    done = len(grid) - len(jobs)

    def train(pool: Pool) -> None:
        nonlocal done
        for index, row in pool.imap_unordered(_train_row, jobs):
            rows[index] = row
            if partial is not None:
                with partial.open("a") as f:
                    f.write(json.dumps({"index": index, "row": row.to_dict()}, allow_nan=False) + "\n")
            done += 1
            if on_row is not None:
                on_row(done, len(grid))

    if not jobs:
        pass  # every row was saved by an interrupted build: no process to start
    elif pool is not None:
        train(pool)
    else:
        with new_pool(workers) as own:
            train(own)
    return tuple(row for row in rows if row is not None)


def new_pool(workers: int) -> Pool:
    """``workers`` spawned processes for training rows, replays and live searches (:func:`init_worker`).

    spawn, not fork: the parent may already run torch's thread pool, which a forked child inherits broken.
    """
    return multiprocessing.get_context("spawn").Pool(processes=max(1, workers), initializer=init_worker)


def _read_partial(partial: Path | None, grid: list[dict[str, Any]]) -> list[tuple[int, Row]]:
    """Rows of an interrupted build whose parameters still match the grid (a cut last line is skipped)."""
    if partial is None or not partial.is_file():
        return []
    out = []
    for line in partial.read_text().splitlines():
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        index, row = int(data["index"]), Row.from_dict(data["row"])
        if index < len(grid) and row.params == grid[index]:
            out.append((index, row))
    return out


def init_worker() -> None:
    """A pool process: one thread, and training logs at ERROR (diverging rows are expected, not news)."""
    torch.set_num_threads(1)
    logging.getLogger("unet").setLevel(logging.ERROR)


_DATA: dict[str, tuple[Any, Any]] = {}


def _train_row(job: tuple[int, tuple[Task, dict[str, Any]]]) -> tuple[int, Row]:
    from unet.fit import fit  # imported in the worker, after its thread setting

    index, (task, params) = job
    data_key = json.dumps(task.to_dict(), sort_keys=True)
    if data_key not in _DATA:
        _DATA[data_key] = task.datasets()
    train, val = _DATA[data_key]
    config = task.train_config(params)
    steps: list[int] = []
    images: list[int] = []

    def on_batch(step: int, total: int) -> None:
        steps.append(step)

    def on_epoch(record: Any) -> None:
        # on_batch follows each optimizer step, so a step cut short by a non-finite loss is not counted.
        images.append(_images_trained(len(steps), len(train), config.batch_size))
        steps.clear()

    started = time.perf_counter()
    result = fit(config, train, val, on_epoch, on_batch=on_batch)
    seconds = time.perf_counter() - started
    history = result.history
    return index, Row(
        params=params,
        val_loss=tuple(float(r.val_loss) for r in history),
        val_dice=tuple(float(r.val_dice) for r in history),
        train_images=tuple(images),
        stop_reason=result.stop_reason,
        seconds=seconds,
    )


def _images_trained(steps: int, n_images: int, batch_size: int) -> int:
    """Images seen in ``steps`` steps of an epoch over ``n_images`` (the last batch may be short)."""
    return min(steps * batch_size, n_images)
