"""The first schema: models, images, experiments, runs and their state changes."""

from __future__ import annotations

from peewee import (
    AutoField,
    CharField,
    Database,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def upgrade(db: Database) -> None:
    class Base(Model):
        class Meta:
            database = db

    class MLModel(Base):
        id = AutoField()
        name = CharField(max_length=200, unique=True)
        description = TextField()
        created_at = DateTimeField()
        best_run_id = IntegerField(null=True)

        class Meta:
            table_name = "model"

    class Image(Base):
        sha256 = CharField(max_length=64, primary_key=True)
        extension = CharField(max_length=10)
        size_bytes = IntegerField()
        width = IntegerField()
        height = IntegerField()
        created_at = DateTimeField()

    class ModelImage(Base):
        id = AutoField()
        model = ForeignKeyField(MLModel, on_delete="CASCADE")
        image = ForeignKeyField(Image, on_delete="CASCADE")
        label = CharField(max_length=100, null=True)
        original_name = CharField(max_length=255)
        created_at = DateTimeField()

        class Meta:
            table_name = "model_image"
            indexes = ((("model", "image"), True),)

    class Experiment(Base):
        id = AutoField()
        model = ForeignKeyField(MLModel, on_delete="CASCADE")
        status = CharField(max_length=20)
        grid = TextField()
        timeout_s = FloatField()
        image_count = IntegerField()
        created_at = DateTimeField()
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        best_run_id = IntegerField(null=True)

    class Run(Base):
        id = AutoField()
        experiment = ForeignKeyField(Experiment, on_delete="CASCADE")
        param_i = FloatField()
        param_j = IntegerField()
        param_k = IntegerField()
        status = CharField(max_length=20, index=True)
        accuracy = FloatField(null=True)
        attempts = IntegerField()
        started_at = DateTimeField(null=True)
        finished_at = DateTimeField(null=True)
        duration_s = FloatField(null=True)
        exit_code = IntegerField(null=True)
        error = TextField(null=True)
        worker = CharField(max_length=255, null=True)
        child_pgid = IntegerField(null=True)
        heartbeat_at = DateTimeField(null=True)

        class Meta:
            indexes = ((("experiment", "param_i", "param_j", "param_k"), True),)

    class RunEvent(Base):
        id = AutoField()
        run = ForeignKeyField(Run, on_delete="CASCADE")
        from_status = CharField(max_length=20)
        to_status = CharField(max_length=20)
        actor = CharField(max_length=255)
        reason = TextField(null=True)
        at = DateTimeField()

        class Meta:
            table_name = "run_event"

    db.create_tables([MLModel, Image, ModelImage, Experiment, Run, RunEvent])
