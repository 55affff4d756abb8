"""The database: one proxy every model binds to, opened from a URL (SQLite or PostgreSQL)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peewee import (  # type: ignore[attr-defined]  # its stubs leave out the wrapper
    BlobField,
    Database,
    DatabaseProxy,
    Field,
    Model,
    SqliteDatabase,
    __exception_wrapper__,
)
from playhouse.db_url import connect, parse
from psycopg2.extras import execute_values

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
    """Insert many rows, with the fields' defaults and conversions as peewee's insert_many
    applies them. Peewee's insert_many makes a node of every value: building its SQL took 3
    of the 4 s of creating a 10,000-run experiment on PostgreSQL. Here SQLite runs one
    statement, prepared once, for each row (executemany, a loop in C); PostgreSQL takes the
    rows as one COPY, or, to skip conflicting rows (which COPY cannot) or to send bytes,
    `batch` rows a statement."""
    if not rows:
        return
    fields = _insert_fields(model, rows)
    columns = [_db_column(field, rows) for field in fields]  # by column: a converter each
    table = f'"{model._meta.table_name}"'
    names = ", ".join(f'"{field.column_name}"' for field in fields)
    # a savepoint inside the caller's transaction (executemany alone would commit each row on
    # its own outside one); peewee's wrapper raises its own errors (IntegrityError) as it does
    with database.atomic(), __exception_wrapper__:
        cursor = database.cursor()
        try:
            if is_sqlite():
                verb = "INSERT OR IGNORE" if ignore_conflicts else "INSERT"
                marks = ", ".join("?" * len(fields))
                cursor.executemany(f"{verb} INTO {table} ({names}) VALUES ({marks})",
                                   list(zip(*columns, strict=True)))
            elif ignore_conflicts or any(isinstance(field, BlobField) for field in fields):
                execute_values(cursor, f"INSERT INTO {table} ({names}) VALUES %s "
                               f"ON CONFLICT DO NOTHING", list(zip(*columns, strict=True)),
                               page_size=batch)
            else:
                lines = "".join("\t".join(row) + "\n" for row in
                                zip(*map(_copy_column, columns), strict=True))
                cursor.copy_expert(f"COPY {table} ({names}) FROM STDIN", io.StringIO(lines))
        finally:
            cursor.close()


def _insert_fields(model: type[Model], rows: list[dict[str, Any]]) -> list[Field]:
    """The fields the rows name, and those with a default, in the table's order."""
    named = {name for row in rows for name in row}
    unknown = named - set(model._meta.fields)
    if unknown:
        raise ValueError(f"{model.__name__} has no fields {sorted(unknown)}")
    return [field for field in model._meta.sorted_fields
            if field.name in named or field in model._meta.defaults]


def _db_column(field: Field, rows: list[dict[str, Any]]) -> list[Any]:
    """One field's values in the rows, its default where a row leaves it out, as stored."""
    name, default = field.name, field.default
    if callable(default):
        values = [row[name] if name in row else default() for row in rows]
    else:
        values = [row.get(name, default) for row in rows]
    return list(map(field.db_value, values))


# COPY's text format: a tab between columns, a newline after a row, \N for NULL, and these
# characters escaped with a backslash
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_column(values: list[Any]) -> list[str]:
    """A column's values as COPY reads them: numbers, text and dates as `str` writes them."""
    return ["\\N" if value is None else ("t" if value else "f") if isinstance(value, bool)
            else str(value).translate(_COPY_ESCAPES) for value in values]


def is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def ping() -> None:
    """Raise if the database cannot answer a trivial query."""
    database.execute_sql("SELECT 1").fetchone()
