"""Track what still has to reach the broker: experiments whose messages were not all sent,
and when a lost run was last nudged with a fresh message."""

from __future__ import annotations

from peewee import BooleanField, Database, DateTimeField
from playhouse.migrate import SchemaMigrator, migrate


def upgrade(db: Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(
        migrator.add_column("experiment", "unpublished", BooleanField(default=False)),
        migrator.add_column("run", "nudged_at", DateTimeField(null=True)),
    )
