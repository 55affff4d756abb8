"""Learning curves: the points (step, value of the objective) a run prints while it trains."""

from __future__ import annotations

from peewee import (
    AutoField,
    Database,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
)

from migrations.frozen_fields import NeverReusedId


def upgrade(db: Database) -> None:
    class Run(Model):
        id = AutoField()

        class Meta:
            database = db
            table_name = "run"

    class RunPoint(Model):
        id = NeverReusedId()
        run = ForeignKeyField(Run, on_delete="CASCADE")
        step = IntegerField()
        value = FloatField()

        class Meta:
            database = db
            table_name = "run_point"
            indexes = ((("run", "step"), True),)

    db.create_tables([RunPoint])
