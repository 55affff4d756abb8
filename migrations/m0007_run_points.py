"""Learning curves: the points (step, value of the objective) a run prints while it trains."""

from __future__ import annotations

from peewee import (
    SQL,
    AutoField,
    Context,
    Database,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    NodeList,
    SqliteDatabase,
)


class _NeverReusedId(AutoField):
    """AUTOINCREMENT on SQLite, as m0003 made every id (frozen here, not imported)."""

    def ddl(self, ctx: Context) -> NodeList:
        node_list = super().ddl(ctx)
        if isinstance(self.model._meta.database, SqliteDatabase):
            return NodeList((node_list, SQL("AUTOINCREMENT")))
        return node_list


def upgrade(db: Database) -> None:
    class Run(Model):
        id = AutoField()

        class Meta:
            database = db
            table_name = "run"

    class RunPoint(Model):
        id = _NeverReusedId()
        run = ForeignKeyField(Run, on_delete="CASCADE")
        step = IntegerField()
        value = FloatField()

        class Meta:
            database = db
            table_name = "run_point"
            indexes = ((("run", "step"), True),)

    db.create_tables([RunPoint])
