"""Bulk study data for the store benchmark: finished trials written straight into Optuna's tables (and
ours), and studies deleted the same way. Trial by trial, 10,000 trials take minutes to create and, through
Optuna's ORM cascade, to delete; in bulk, seconds.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages._rdb import models
from optuna.trial import TrialState

from search.outcome import BEST_EPOCH, DIAGNOSIS, TRAIN_IMAGES
from search.store.engine import EPOCHS, HEARTBEATS
from unet.history import EPOCH_FIELDS

# The parameters of the benchmark's trials, as the service's studies would have them.
DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
    "loss": CategoricalDistribution(("dice_bce", "dice", "bce", "focal")),
}


def epoch_record(epoch: int) -> dict[str, float]:
    """A complete epoch-table record (every metric 0.5) for ``epoch``."""
    record = {field: 0.5 for field in EPOCH_FIELDS}
    record["epoch"] = epoch
    return record


def delete_study(storage: optuna.storages.RDBStorage, study_name: str) -> None:
    """Delete a study, its trials and our rows in bulk (Optuna's ORM cascade is slow at 10,000 trials)."""
    engine = storage.engine
    studies = models.StudyModel.__table__
    trials = models.TrialModel.__table__
    with engine.begin() as connection:
        study_id = connection.execute(
            sa.select(studies.c.study_id).where(studies.c.study_name == study_name)
        ).scalar()
        if study_id is not None:
            trial_ids = sa.select(trials.c.trial_id).where(trials.c.study_id == study_id)
            for model in (
                models.TrialUserAttributeModel,
                models.TrialSystemAttributeModel,
                models.TrialParamModel,
                models.TrialValueModel,
                models.TrialIntermediateValueModel,
                models.TrialHeartbeatModel,
            ):
                table = model.__table__
                connection.execute(sa.delete(table).where(table.c.trial_id.in_(trial_ids)))
            connection.execute(sa.delete(trials).where(trials.c.study_id == study_id))
            for model in (
                models.StudyUserAttributeModel,
                models.StudySystemAttributeModel,
                models.StudyDirectionModel,
            ):
                table = model.__table__
                connection.execute(sa.delete(table).where(table.c.study_id == study_id))
            connection.execute(sa.delete(studies).where(studies.c.study_id == study_id))
        connection.execute(sa.delete(EPOCHS).where(EPOCHS.c.study_name == study_name))
        connection.execute(sa.delete(HEARTBEATS).where(HEARTBEATS.c.study_name == study_name))


def add_finished_trials(
    storage: optuna.storages.RDBStorage, study: optuna.Study, count: int, *, epochs: int
) -> None:
    """Insert ``count`` COMPLETE trials in bulk, as the service leaves them (params, value, epochs, attrs)."""
    if count <= 0:
        return
    engine = storage.engine
    study_id = study._study_id
    trials_table = models.TrialModel.__table__
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with engine.begin() as connection:
        last = connection.execute(
            sa.select(sa.func.coalesce(sa.func.max(trials_table.c.number), -1)).where(
                trials_table.c.study_id == study_id
            )
        ).scalar_one()
        first = int(last) + 1
        numbers = range(first, first + count)
        connection.execute(
            sa.insert(trials_table),
            [
                {
                    "number": n,
                    "study_id": study_id,
                    "state": TrialState.COMPLETE,
                    "datetime_start": now,
                    "datetime_complete": now,
                }
                for n in numbers
            ],
        )
        ids: dict[int, int] = dict(
            connection.execute(
                sa.select(trials_table.c.number, trials_table.c.trial_id).where(
                    trials_table.c.study_id == study_id, trials_table.c.number >= first
                )
            ).all()
        )
        _insert_children(connection, [ids[n] for n in numbers], numbers, study.study_name, epochs, now)


def _insert_children(
    connection: sa.Connection,
    trial_ids: list[int],
    numbers: range,
    study_name: str,
    epochs: int,
    now: dt.datetime,
) -> None:
    lr_json = optuna.distributions.distribution_to_json(DISTRIBUTIONS["learning_rate"])
    loss_json = optuna.distributions.distribution_to_json(DISTRIBUTIONS["loss"])
    finite = models.TrialValueModel.TrialValueType.FINITE
    finite_step = models.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE
    rows: dict[sa.Table, list[dict[str, Any]]] = {
        models.TrialParamModel.__table__: [],
        models.TrialValueModel.__table__: [],
        models.TrialIntermediateValueModel.__table__: [],
        models.TrialUserAttributeModel.__table__: [],
        EPOCHS: [],
    }
    for trial_id, number in zip(trial_ids, numbers, strict=True):
        value = 0.3 + 0.4 * ((number * 7919) % 1000) / 1000
        rows[models.TrialParamModel.__table__] += [
            {
                "trial_id": trial_id,
                "param_name": "learning_rate",
                "param_value": 1e-3,
                "distribution_json": lr_json,
            },
            {"trial_id": trial_id, "param_name": "loss", "param_value": 1.0, "distribution_json": loss_json},
        ]
        rows[models.TrialValueModel.__table__].append(
            {"trial_id": trial_id, "objective": 0, "value": value, "value_type": finite}
        )
        for epoch in range(1, epochs + 1):
            rows[models.TrialIntermediateValueModel.__table__].append(
                {
                    "trial_id": trial_id,
                    "step": epoch,
                    "intermediate_value": value,
                    "intermediate_value_type": finite_step,
                }
            )
            record = {k: v for k, v in epoch_record(epoch).items()}
            rows[EPOCHS].append(
                {
                    "study_name": study_name,
                    "trial_id": trial_id,
                    "trial_number": number,
                    **record,
                    "recorded_at": now,
                }
            )
        for key, attr in ((BEST_EPOCH, epochs), (DIAGNOSIS, "healthy"), (TRAIN_IMAGES, 64)):
            rows[models.TrialUserAttributeModel.__table__].append(
                {"trial_id": trial_id, "key": key, "value_json": json.dumps(attr)}
            )
    for table, values in rows.items():
        for start in range(0, len(values), 5000):
            connection.execute(sa.insert(table), values[start : start + 5000])
