"""Parameters of any names: a run keeps its parameters as one JSON object (in its grid's
order) and their identity (`config`, a hash of them in sorted order), which replaces i, j and k
in the one-run-per-configuration-and-seed key. Every run's i, j and k are kept as
`{"i": …, "j": …, "k": …}`."""

from __future__ import annotations

import hashlib
import json

from peewee import CharField, Database, TextField
from playhouse.migrate import SchemaMigrator, migrate

OLD_KEY = "run_experiment_id_trial_param_i_param_j_param_k_seed"
BATCH = 500


def _config_key(params: dict) -> str:
    """Frozen copy of service.sweeps.grid.config_key as it was when this migration was
    written: the same parameters give the same identity before and after."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _fill(db: Database) -> None:
    rows = db.execute_sql("SELECT id, param_i, param_j, param_k FROM run").fetchall()
    marker = "?" if db.param == "?" else "%s"
    sql = f"UPDATE run SET params = {marker}, config = {marker} WHERE id = {marker}"
    for start in range(0, len(rows), BATCH):
        updates = []
        for run_id, i, j, k in rows[start:start + BATCH]:
            params = {"i": float(i), "j": int(j), "k": int(k)}
            updates.append((json.dumps(params), _config_key(params), run_id))
        db.cursor().executemany(sql, updates)


def upgrade(db: Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("run", "params", TextField(default="{}")),
            migrator.add_column("run", "config", CharField(max_length=64, default="")))
    _fill(db)
    migrate(migrator.drop_index("run", OLD_KEY),
            migrator.drop_column("run", "param_i"),
            migrator.drop_column("run", "param_j"),
            migrator.drop_column("run", "param_k"),
            migrator.add_index("run", ("experiment_id", "trial", "config", "seed"), unique=True))
