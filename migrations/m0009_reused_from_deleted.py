"""A run reused from another keeps its result, folder and curve when that run is deleted (with
its model); it then says the run it was reused from is gone."""

from __future__ import annotations

from peewee import BooleanField, Database
from playhouse.migrate import SchemaMigrator, migrate


def upgrade(db: Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("run", "reused_from_deleted", BooleanField(default=False)))
