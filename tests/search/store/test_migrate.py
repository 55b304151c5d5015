"""An older store's epoch table gets the evidence columns when it is opened, on every backend."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import optuna
import pytest
import sqlalchemy as sa

from search.store.engine import EPOCHS, open_storage
from search.store.epochs import EpochStore
from search.store.migrate import add_missing_columns
from unet.history import EPOCH_FIELDS

# The epoch table as the store wrote it before the diagnosis evidence (issue 15).
OLD_FIELDS = (
    "train_loss",
    "val_loss",
    "val_dice",
    "val_iou",
    "learning_rate",
    "grad_norm",
    "grad_norm_max",
    "seconds",
    "images_per_s",
)


def _old_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "unet_search_epochs",
        metadata,
        sa.Column("study_name", sa.String(512), nullable=False, index=True),
        sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("trial_number", sa.Integer, nullable=False),
        sa.Column("epoch", sa.Integer, primary_key=True, autoincrement=False),
        *(sa.Column(field, sa.Double, nullable=True) for field in OLD_FIELDS),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )


def test_old_epoch_table_gets_new_columns_and_keeps_rows(
    backend: str, fresh_database: Callable[[str], AbstractContextManager[str]]
) -> None:
    with fresh_database(backend) as url:
        storage = open_storage(url)  # Optuna's tables; then replace ours by the old layout
        study = optuna.create_study(storage=storage, study_name="old")
        trial_id = study.ask()._trial_id
        engine = storage.engine
        EPOCHS.drop(engine)
        old = _old_table(sa.MetaData())
        old.create(engine)
        with engine.begin() as connection:
            row = {"study_name": "old", "trial_id": trial_id, "trial_number": 0, "epoch": 1}
            row |= dict.fromkeys(OLD_FIELDS, 0.5) | {"recorded_at": dt.datetime(2026, 1, 1)}
            connection.execute(old.insert().values(**row))
        storage.engine.dispose()

        reopened = open_storage(url)
        columns = {c["name"] for c in sa.inspect(reopened.engine).get_columns("unet_search_epochs")}
        assert set(EPOCH_FIELDS) <= columns
        epochs = EpochStore(reopened.engine)
        new = dict.fromkeys(EPOCH_FIELDS, 0.25) | {"epoch": 2, "val_class_shares": '{"1":[0.1,0.2]}'}
        epochs.record_epoch("old", trial_id, 0, new)
        frame = epochs.read_epochs("old")
        assert frame["epoch"].tolist() == [1, 2]
        assert frame["train_loss"].tolist() == [0.5, 0.25]
        assert math.isnan(frame["train_dice"][0]) and frame["train_dice"][1] == 0.25
        assert frame["val_class_shares"].isna().tolist() == [True, False]
        assert frame["val_class_shares"][1] == '{"1":[0.1,0.2]}'
        # Opening again adds nothing.
        assert add_missing_columns(reopened.engine, EPOCHS) == []
        reopened.engine.dispose()


def test_a_missing_not_null_column_is_refused(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    sa.Table("t", sa.MetaData(), sa.Column("a", sa.Integer, primary_key=True)).create(engine)
    columns = (sa.Column("a", sa.Integer, primary_key=True), sa.Column("b", sa.Integer, nullable=False))
    wanted = sa.Table("t", sa.MetaData(), *columns)
    with pytest.raises(ValueError, match=r"t\.b cannot be added .* NOT NULL"):
        add_missing_columns(engine, wanted)
