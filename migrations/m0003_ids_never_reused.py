"""Ids are never given twice: AUTOINCREMENT on SQLite's tables with integer ids.

Without it SQLite hands the highest deleted rowid out again, and a stale `train` message for a
deleted run would then run a new experiment's run. PostgreSQL's sequences never reuse a value,
so there is nothing to do there. SQLite cannot add AUTOINCREMENT to a table: each table is
rebuilt (new table, copy every row, drop, rename: SQLite's documented procedure; the migration
runner switches foreign keys off around it), and its indexes are created again.
"""

from __future__ import annotations

from peewee import Database, SqliteDatabase

TABLES = ("model", "model_image", "experiment", "run", "run_event")
PLAIN_ID = '"id" INTEGER NOT NULL PRIMARY KEY'


def upgrade(db: Database) -> None:
    if not isinstance(db, SqliteDatabase):
        return
    for table in TABLES:
        _rebuild_with_autoincrement(db, table)


def _rebuild_with_autoincrement(db: Database, table: str) -> None:
    create_sql = db.execute_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (table,)).fetchone()[0]
    if "AUTOINCREMENT" in create_sql:
        return
    if PLAIN_ID not in create_sql:
        raise RuntimeError(f"table {table} has no plain integer id to make AUTOINCREMENT")
    index_sql = [row[0] for row in db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (table,))]
    scratch = f"{table}__rebuild"
    new_sql = create_sql.replace(PLAIN_ID, PLAIN_ID + " AUTOINCREMENT", 1)
    new_sql = new_sql.replace(f'CREATE TABLE "{table}"', f'CREATE TABLE "{scratch}"', 1)
    db.execute_sql(new_sql)
    db.execute_sql(f'INSERT INTO "{scratch}" SELECT * FROM "{table}"')
    db.execute_sql(f'DROP TABLE "{table}"')
    db.execute_sql(f'ALTER TABLE "{scratch}" RENAME TO "{table}"')
    for statement in index_sql:
        db.execute_sql(statement)
