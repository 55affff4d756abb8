"""The database: one proxy every model binds to, opened from a URL (SQLite or PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peewee import Database, DatabaseProxy, SqliteDatabase
from playhouse.db_url import connect

database = DatabaseProxy()

# WAL lets readers go on while a worker writes; the busy timeout makes a writer wait for the
# lock instead of failing with "database is locked".
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 30_000,
    "foreign_keys": 1,
    "synchronous": "normal",
}


def open_database(url: str) -> Database:
    """Create the database for `url` and bind the proxy to it (it connects lazily)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # IMMEDIATE: a read-then-write transaction takes the write lock up front, so two
        # writers never both read, then deadlock upgrading their locks.
        db = connect(url, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE",
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


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def ping() -> None:
    """Raise if the database cannot answer a trivial query."""
    database.execute_sql("SELECT 1").fetchone()
