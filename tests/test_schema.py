"""The migrations produce exactly the models' schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json

import peewee

from service.core.db import database, open_database
from service.core.tables import ALL_TABLES, SchemaMigration
from service.migrate import apply_migrations
from service.sweeps.grid import config_key


def schema_of(url: str) -> dict:
    db = open_database(url)
    schema = {}
    for table in sorted(db.get_tables()):
        if table == "sqlite_sequence":  # SQLite's own, for AUTOINCREMENT
            schema[table] = None
            continue
        columns = [(c.name, c.data_type, c.null, c.primary_key)
                   for c in db.get_columns(table)]
        indexes = sorted((tuple(i.columns), i.unique) for i in db.get_indexes(table))
        keys = sorted((k.column, k.dest_table, k.dest_column)
                      for k in db.get_foreign_keys(table))
        schema[table] = (columns, indexes, keys, _autoincrement(db, table))
    db.close()
    return schema


def _autoincrement(db, table: str) -> bool | None:
    """Whether SQLite's table never reuses ids (None on PostgreSQL: sequences never do)."""
    if not isinstance(db, peewee.SqliteDatabase):
        return None
    sql = db.execute_sql("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    return "AUTOINCREMENT" in sql


def by_migrations(url: str) -> dict:
    open_database(url)
    apply_migrations()
    database.close()
    return schema_of(url)


def by_models(url: str) -> dict:
    open_database(url)
    database.create_tables([*ALL_TABLES, SchemaMigration])
    database.close()
    return schema_of(url)


def test_sqlite_migrations_equal_the_models(tmp_path):
    migrated = by_migrations(f"sqlite:///{tmp_path / 'migrated.db'}")
    modelled = by_models(f"sqlite:///{tmp_path / 'modelled.db'}")
    assert set(migrated) == {"model", "image", "model_image", "experiment", "run", "run_event",
                             "worker_process", "run_point", "code_version", "config_stat",
                             "schema_migration", "sqlite_sequence"}
    assert migrated == modelled
    never_reused = {table for table, shape in migrated.items() if shape and shape[3]}
    assert never_reused == {"model", "model_image", "experiment", "run", "run_event",
                            "worker_process", "run_point", "code_version", "config_stat"}


def test_migrations_are_applied_once_and_upgrade_existing_data(tmp_path, monkeypatch):
    import service.migrate as migrate_module

    open_database(f"sqlite:///{tmp_path / 'once.db'}")
    # Given a database at the first migration, with a model in it
    monkeypatch.setattr(migrate_module, "migration_names", lambda: ["m0001_initial"])
    assert apply_migrations() == ["m0001_initial"]
    for statement in (
        "INSERT INTO model (id, name, description, created_at) VALUES (1, 'kept', '', '2026')",
        "INSERT INTO experiment (id, model_id, status, grid, timeout_s, image_count, created_at)"
        " VALUES (1, 1, 'completed', '{}', 10, 0, '2026')",
        "INSERT INTO run (id, experiment_id, param_i, param_j, param_k, status, attempts)"
        " VALUES (1, 1, 0.1, 1, 1, 'succeeded', 1)",
        "INSERT INTO run_event (run_id, from_status, to_status, actor, at)"
        " VALUES (1, 'queued', 'running', 'w', '2026')",
    ):
        database.execute_sql(statement)
    monkeypatch.undo()
    # When the later migrations are applied, then again
    later = apply_migrations()
    # Then each ran once, and every row is still there (a table rebuild must not cascade)
    assert later == migrate_module.migration_names()[1:] and later
    assert apply_migrations() == []
    for table in ("model", "experiment", "run", "run_event"):
        assert database.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone() == (1,), table
    assert database.execute_sql("PRAGMA foreign_keys").fetchone() == (1,)
    # And the run's i, j, k are its parameters, by name, with their identity
    params, config = database.execute_sql("SELECT params, config FROM run").fetchone()
    assert json.loads(params) == {"i": 0.1, "j": 1, "k": 1}
    assert config == config_key({"i": 0.1, "j": 1, "k": 1})
    # And an id freed by a delete is not given again
    database.execute_sql("DELETE FROM model WHERE id = 1")
    database.execute_sql("INSERT INTO model (name, description, created_at) VALUES ('n', '', '')")
    assert database.execute_sql("SELECT id FROM model").fetchall() == [(2,)]
    database.close()


def test_postgresql_migrations_equal_the_models(postgres_database):
    migrated_url, modelled_url = postgres_database
    assert by_migrations(migrated_url) == by_models(modelled_url)
