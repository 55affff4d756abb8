"""The worker registry: each worker process reports itself (host, pid, threads, GPUs, version,
queues) and when it was last seen, so the API can list workers and show the silent ones lost."""

from __future__ import annotations

from peewee import (
    SQL,
    AutoField,
    BooleanField,
    CharField,
    Context,
    Database,
    DateTimeField,
    IntegerField,
    Model,
    NodeList,
    SqliteDatabase,
    TextField,
)


class _NeverReusedId(AutoField):
    """AUTOINCREMENT on SQLite, as m0003 made every id; PostgreSQL's sequences never reuse.
    Declared here, frozen, rather than imported from today's models."""

    def ddl(self, ctx: Context) -> NodeList:
        node_list = super().ddl(ctx)
        if isinstance(self.model._meta.database, SqliteDatabase):
            return NodeList((node_list, SQL("AUTOINCREMENT")))
        return node_list


def upgrade(db: Database) -> None:
    class WorkerProcess(Model):
        id = _NeverReusedId()
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
