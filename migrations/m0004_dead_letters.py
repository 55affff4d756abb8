"""Count how often a run's message was dead-lettered and sent again, so a run whose message
fails on every delivery (an infrastructure fault) ends `failed` after a bounded number."""

from __future__ import annotations

from peewee import Database, IntegerField
from playhouse.migrate import SchemaMigrator, migrate


def upgrade(db: Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("run", "dead_letters", IntegerField(default=0)))
