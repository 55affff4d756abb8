"""Fields the migrations share, frozen like the migrations themselves: never today's models.

Not a migration (the runner takes only modules named `m…`)."""

from __future__ import annotations

from peewee import SQL, AutoField, Context, NodeList, SqliteDatabase


class NeverReusedId(AutoField):
    """AUTOINCREMENT on SQLite, as m0003 made every id; PostgreSQL's sequences never reuse."""

    def ddl(self, ctx: Context) -> NodeList:
        node_list = super().ddl(ctx)
        if isinstance(self.model._meta.database, SqliteDatabase):
            return NodeList((node_list, SQL("AUTOINCREMENT")))
        return node_list
