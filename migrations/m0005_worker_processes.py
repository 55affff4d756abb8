"""The worker registry: each worker process reports itself (host, pid, threads, GPUs, version,
queues) and when it was last seen, so the API can list workers and show the silent ones lost."""

from __future__ import annotations

from peewee import (
    BooleanField,
    CharField,
    Database,
    DateTimeField,
    IntegerField,
    Model,
    TextField,
)

from migrations.frozen_fields import NeverReusedId


def upgrade(db: Database) -> None:
    class WorkerProcess(Model):
        id = NeverReusedId()
        name = CharField(max_length=255, unique=True)
        host = CharField(max_length=255)
        pid = IntegerField()
        threads = IntegerField()
        gpus = TextField()
        version = CharField(max_length=100)
        queues = TextField()
        remote = BooleanField()
        started_at = DateTimeField()
        last_seen_at = DateTimeField()

        class Meta:
            database = db
            table_name = "worker_process"

    db.create_tables([WorkerProcess])
