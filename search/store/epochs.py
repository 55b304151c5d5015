"""Per-epoch metrics of every trial, in the store's ``unet_search_epochs`` table (see :mod:`search.store`).

Optuna keeps one intermediate value per step; the diagnosis and the reports need every metric of every
epoch, so ``fit()``'s epoch records go to a table of their own in the same database.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping
from typing import TypeVar

import pandas as pd
import sqlalchemy as sa

from search.store.engine import EPOCHS, StoreError
from search.store.retry import call_with_retry
from search.store.rows import upsert_row
from unet.history import EPOCH_FIELDS, TEXT_FIELDS

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Column order of the table and of read_epochs()'s DataFrame.
EPOCH_COLUMNS: tuple[str, ...] = ("study_name", "trial_id", "trial_number", *EPOCH_FIELDS, "recorded_at")
_VALUE_FIELDS = tuple(field for field in EPOCH_FIELDS if field != "epoch" and field not in TEXT_FIELDS)


class EpochStore:
    """Writes and reads the epoch table through an Optuna RDBStorage's engine.

    Args:
        engine: ``storage.engine`` of the storage :func:`search.store.engine.open_storage` returned (which
            created the table).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def record_epoch(
        self, study_name: str, trial_id: int, trial_number: int, record: Mapping[str, float | str]
    ) -> None:
        """Store one epoch of a trial, replacing an earlier row of the same (trial, epoch).

        Recording again is harmless: a retried or resumed epoch overwrites its row in one statement.

        Args:
            study_name: the trial's study.
            trial_id: Optuna's ``trial._trial_id`` (unique in the database).
            trial_number: the trial's number within the study.
            record: every field of ``unet.history.EPOCH_FIELDS``, e.g. ``EpochRecord.to_dict()``;
                NaN and infinite values are stored as NULL, text fields (``TEXT_FIELDS``) as text.

        Raises:
            StoreError: the record lacks fields, has unknown ones, or its epoch is not a whole number.
        """
        row = {
            "study_name": study_name,
            "trial_id": int(trial_id),
            "trial_number": int(trial_number),
            **_row_values(record),
            "recorded_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        }
        upsert_row(self.engine, EPOCHS, row, ("trial_id", "epoch"))

    def read_epochs(self, study_name: str) -> pd.DataFrame:
        """Return every stored epoch of a study, one row each, sorted by trial number then epoch.

        Columns are :data:`EPOCH_COLUMNS` in that order; metrics that were NaN/inf (stored as NULL)
        read back as NaN, text fields as str (missing, e.g. in rows written before the column existed: NaN).
        """
        query = (
            sa.select(*(EPOCHS.c[name] for name in EPOCH_COLUMNS))
            .where(EPOCHS.c.study_name == study_name)
            .order_by(EPOCHS.c.trial_number, EPOCHS.c.epoch)
        )
        rows = self._read(lambda connection: connection.execute(query).all())
        frame = pd.DataFrame([tuple(row) for row in rows], columns=list(EPOCH_COLUMNS))
        dtypes = {name: "float64" for name in _VALUE_FIELDS}
        dtypes.update({"trial_id": "int64", "trial_number": "int64", "epoch": "int64"})
        frame = frame.astype(dtypes)
        frame["recorded_at"] = pd.to_datetime(frame["recorded_at"])
        return frame

    def _read(self, query: Callable[[sa.Connection], T]) -> T:
        """Run a read on a connection of its own, retried when the connection is cut."""

        def read() -> T:
            with self.engine.connect() as connection:
                return query(connection)

        return call_with_retry(read, engine=self.engine, what="read the epoch table")

    def epochs_per_trial(self, study_name: str) -> dict[int, int]:
        """Return how many epochs each trial of a study stored, by Optuna trial id (none: left out).

        The compute a study spent (``search.execution.budget``): rows are unique per (trial, epoch).
        """
        query = (
            sa.select(EPOCHS.c.trial_id, sa.func.count())
            .where(EPOCHS.c.study_name == study_name)
            .group_by(EPOCHS.c.trial_id)
        )
        rows = self._read(lambda connection: connection.execute(query).all())
        return {int(trial_id): int(n) for trial_id, n in rows}

    def last_epoch(self, trial_id: int) -> int:
        """Return the highest epoch stored for a trial, or 0 when none is."""
        query = sa.select(sa.func.max(EPOCHS.c.epoch)).where(EPOCHS.c.trial_id == int(trial_id))
        last = self._read(lambda connection: connection.execute(query).scalar())
        return int(last) if last is not None else 0


def _row_values(record: Mapping[str, float | str]) -> dict[str, int | float | str | None]:
    """The epoch and metric columns of ``record``, checked, with NaN/inf turned into NULL."""
    missing = [field for field in EPOCH_FIELDS if field not in record]
    unknown = sorted(set(record) - set(EPOCH_FIELDS))
    if missing or unknown:
        raise StoreError(
            f"epoch record has missing fields {missing} and unknown fields {unknown}: "
            f"pass EpochRecord.to_dict(), whose fields are {list(EPOCH_FIELDS)}"
        )
    epoch = record["epoch"]
    if isinstance(epoch, bool) or not float(epoch).is_integer():
        raise StoreError(f"epoch record's epoch must be a whole number but got {epoch!r}")
    values: dict[str, int | float | str | None] = {"epoch": int(epoch)}
    for field in _VALUE_FIELDS:
        value = record[field]
        if isinstance(value, str):
            raise StoreError(f"epoch record's {field} must be a number but got {value!r}")
        values[field] = float(value) if value is not None and math.isfinite(value) else None
    for field in TEXT_FIELDS:
        text = record[field]
        values[field] = None if text is None else str(text)
    return values
