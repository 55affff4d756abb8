"""A worker process that stops cleanly says so in its last report: the registry lists it
`stopped`, not `lost`, until it is forgotten."""

from __future__ import annotations

from peewee import Database, DateTimeField
from playhouse.migrate import SchemaMigrator, migrate


def upgrade(db: Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("worker_process", "stopped_at", DateTimeField(null=True)))
