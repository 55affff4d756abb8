"""The database: one proxy every model binds to, opened from a URL (SQLite or PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peewee import Database, DatabaseProxy, Model, SqliteDatabase
from playhouse.db_url import connect, parse

database = DatabaseProxy()

# WAL lets readers go on while a worker writes; the busy timeout makes a writer wait for the
# lock instead of failing with "database is locked".
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 30_000,
    "foreign_keys": 1,
    "synchronous": "normal",
}


class ReadRows:
    """A cursor's whole result, read at once: what peewee needs of a cursor, without the
    statement behind it."""

    def __init__(self, cursor: Any) -> None:
        self.rows = cursor.fetchall()
        self.description = cursor.description
        self.lastrowid = cursor.lastrowid
        self.rowcount = cursor.rowcount
        self._next = 0
        cursor.close()

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self.rows):
            return None
        self._next += 1
        return self.rows[self._next - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rest, self._next = self.rows[self._next:], len(self.rows)
        return rest

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        some = self.rows[self._next:self._next + size]
        self._next += len(some)
        return some

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        self._next = len(self.rows)


class SnapshotSafeSqliteDatabase(SqliteDatabase):
    """SQLite whose queries never leave a statement open on their connection.

    In WAL mode a statement still stepping (a query iterated part way, a cursor kept
    somewhere) holds its connection's read snapshot. If any other connection commits
    meanwhile, a write begun on this one can never see the newest data, and SQLite refuses it
    at once with "database is locked" (SQLITE_BUSY_SNAPSHOT), without the busy timeout: a 500
    for whichever request happened to reuse that thread's connection. Reading each result
    whole as its query runs closes the statement at once, for every caller."""

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        cursor = super().execute_sql(sql, params)
        return cursor if cursor.description is None else ReadRows(cursor)


def open_database(url: str) -> Database:
    """Create the database for `url` and bind the proxy to it (it connects lazily)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # IMMEDIATE: a read-then-write transaction takes the write lock up front, so two
        # writers never both read, then deadlock upgrading their locks.
        db: Database = SnapshotSafeSqliteDatabase(
            **parse(url), pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE",
            check_same_thread=False, timeout=30)
    else:
        db = connect(url)
    database.initialize(db)
    return db


# SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps in
# steps of up to 100 ms. Threads of one process queue on this lock instead, and are woken the
# moment the writer is done; only writers of different processes meet the busy handler.
_write_lock = threading.RLock()  # re-entrant: transactions nest (as savepoints)


@contextmanager
def write_transaction() -> Iterator[None]:
    """A read-then-write transaction: IMMEDIATE on SQLite, one writer thread per process."""
    if not is_sqlite():
        with database.atomic():
            yield
        return
    with _write_lock, database.atomic():
        yield


def hold_lock(key: int) -> None:
    """Inside a write transaction: wait until no other transaction holds `key`, and hold it
    until this one ends. On PostgreSQL an advisory lock; SQLite's IMMEDIATE transaction already
    keeps every other writer out. For a check of files against rows that no row can lock."""
    if not is_sqlite():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (key,))


def insert_in_batches(model: type[Model], rows: list[dict[str, Any]], batch: int = 500,
                      ignore_conflicts: bool = False) -> None:
    """Insert many rows, a few hundred a statement (SQLite limits a statement's values)."""
    for start in range(0, len(rows), batch):
        query = model.insert_many(rows[start:start + batch])
        (query.on_conflict_ignore() if ignore_conflicts else query).execute()


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def ping() -> None:
    """Raise if the database cannot answer a trivial query."""
    database.execute_sql("SELECT 1").fetchone()
