"""SQLite's write lock and read snapshots: no read left open on a connection turns a later
write on it into an immediate "database is locked" (SQLITE_BUSY_SNAPSHOT skips the busy
timeout), whatever query or caller left it open."""

from __future__ import annotations

import sqlite3
import threading

from service.core.db import write_transaction
from service.core.tables import MLModel


def _write_from_another_connection(settings) -> None:
    path = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=30) as other:
        other.execute("INSERT INTO model (name, description, created_at) "
                      "VALUES (hex(randomblob(8)), '', '2026-01-01 00:00:00')")


def test_a_write_after_a_read_left_open_waits_instead_of_failing(settings, db):
    # Given models, and a query iterated only part way (its cursor still open)
    for n in range(3):
        MLModel.create(name=f"m{n}")
    rows = iter(MLModel.select())
    next(rows)
    # When another connection writes, and this one then begins a write transaction
    _write_from_another_connection(settings)
    with write_transaction():
        MLModel.create(name="after")
    # Then the write went through, and the open query still reads what it began with
    assert [model.name for model in rows] == ["m1", "m2"]
    assert MLModel.select().count() == 5


def test_a_write_inside_a_loop_over_a_query_waits_for_a_writer_of_another_thread(settings, db):
    # Given a query looped over while another thread's connection writes in between
    for n in range(3):
        MLModel.create(name=f"m{n}")
    written = []
    for model in MLModel.select().order_by(MLModel.id):
        thread = threading.Thread(target=_write_from_another_connection, args=(settings,))
        thread.start()
        thread.join()
        # When each step of the loop writes
        with write_transaction():
            written.append(MLModel.create(name=f"{model.name}-copy").id)
    # Then every write happened
    assert len(written) == 3
