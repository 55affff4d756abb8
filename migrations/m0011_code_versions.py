"""A model's own code: its versions (trees named by content), and the version an experiment
pins when it is created."""

from __future__ import annotations

from peewee import (
    CharField,
    Database,
    DateTimeField,
    ForeignKeyField,
    Model,
    TextField,
)
from playhouse.migrate import SchemaMigrator, migrate

from migrations.frozen_fields import NeverReusedId


def upgrade(db: Database) -> None:
    class MLModel(Model):
        id = NeverReusedId()

        class Meta:
            database = db
            table_name = "model"

    class CodeVersion(Model):
        id = NeverReusedId()
        model = ForeignKeyField(MLModel, on_delete="CASCADE")
        version = CharField(max_length=64)
        files = TextField()
        train = CharField(max_length=255)
        test = CharField(max_length=255, null=True)
        requirements = CharField(max_length=255, null=True)
        defaults = TextField(null=True)
        created_at = DateTimeField()
        uploaded_at = DateTimeField()

        class Meta:
            database = db
            table_name = "code_version"
            indexes = ((("model", "version"), True),)

    db.create_tables([CodeVersion])
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("experiment", "code_version", CharField(max_length=64, null=True)))
