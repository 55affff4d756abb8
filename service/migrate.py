"""Apply the migrations in `migrations/` that the database has not seen yet.

Run by the API at start, and by hand with `python -m service.migrate`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from contextlib import contextmanager

import migrations
from service.core.db import database, is_sqlite, open_database
from service.core.tables import SchemaMigration
from service.settings import load_settings


def migration_names() -> list[str]:
    names = [info.name for info in pkgutil.iter_modules(migrations.__path__)]
    return sorted(name for name in names if name.startswith("m"))


@contextmanager
def _foreign_keys_deferred() -> Iterator[None]:
    """On SQLite, some schema changes rebuild a table (copy, drop, rename). With foreign keys
    on, dropping the old table would cascade-delete every row that refers to it, so they are
    switched off around the migration, then checked (SQLite's documented procedure)."""
    if not is_sqlite():
        yield
        return
    database.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        yield
        broken = database.execute_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"migration left rows pointing nowhere: {broken[:5]}")
    finally:
        database.execute_sql("PRAGMA foreign_keys = ON")


def apply_migrations() -> list[str]:
    """Apply every pending migration, each in its own transaction; return their names."""
    database.create_tables([SchemaMigration], safe=True)
    done = {row.version for row in SchemaMigration.select()}
    applied = []
    for name in migration_names():
        if name in done:
            continue
        module = importlib.import_module(f"migrations.{name}")
        with _foreign_keys_deferred(), database.atomic():
            module.upgrade(database.obj)
            SchemaMigration.create(version=name)
        applied.append(name)
    return applied


def schema_problem() -> str | None:
    """Why this database cannot serve this code (no sweeplab schema, or not migrated), or None."""
    if not database.table_exists(SchemaMigration._meta.table_name):
        return "has no sweeplab schema"
    done = {row.version for row in SchemaMigration.select()}
    pending = [name for name in migration_names() if name not in done]
    if pending:
        return f"is not migrated to this version (pending: {', '.join(pending)})"
    return None


def main() -> None:
    settings = load_settings()
    open_database(settings.database_url)
    applied = apply_migrations()
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


if __name__ == "__main__":
    main()
