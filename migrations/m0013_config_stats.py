"""Each configuration's running statistics (config_stat: Welford's n, mean and M2, its range,
first and best run) and each experiment's best mean, filled from the succeeded runs: from now
on they are updated with each result instead of recomputed from every run (issue 24)."""

from __future__ import annotations

import json
from typing import Any

from peewee import CharField, Database, DoubleField, ForeignKeyField, IntegerField, Model, TextField
from playhouse.migrate import SchemaMigrator, migrate

from migrations.frozen_fields import NeverReusedId

BATCH = 500


def _stats(rows: list[tuple[int, str, str, float]], maximize: bool) -> dict[str, dict[str, Any]]:
    """Frozen copy of service.runs.tally's Welford pass as it was when this was written."""
    stats: dict[str, dict[str, Any]] = {}
    sign = 1 if maximize else -1
    for run_id, params, config, value in sorted(rows):
        stat = stats.setdefault(config, {"params": params, "n": 0, "mean": 0.0, "m2": 0.0,
                                         "low": value, "high": value, "first_run_id": run_id,
                                         "best_run_id": run_id, "best_value": value,
                                         "run_ids": []})
        stat["n"] += 1
        delta = value - stat["mean"]
        stat["mean"] += delta / stat["n"]
        stat["m2"] += delta * (value - stat["mean"])
        stat["low"], stat["high"] = min(stat["low"], value), max(stat["high"], value)
        if (sign * value, -run_id) > (sign * stat["best_value"], -stat["best_run_id"]):
            stat["best_run_id"], stat["best_value"] = run_id, value
        stat["run_ids"].append(run_id)
    return stats


def _fill(db: Database, table: type[Model]) -> None:
    marker = "?" if db.param == "?" else "%s"
    experiments = db.execute_sql("SELECT id, objective_direction FROM experiment").fetchall()
    for experiment_id, direction in experiments:
        rows = db.execute_sql(
            f"SELECT id, params, config, value FROM run WHERE experiment_id = {marker} AND "
            f"status = 'succeeded' AND value IS NOT NULL", (experiment_id,)).fetchall()
        stats = _stats(rows, direction == "maximize")
        inserts = [{"experiment": experiment_id, "config": config,
                    **stat, "run_ids": json.dumps(stat["run_ids"])}
                   for config, stat in stats.items()]
        for start in range(0, len(inserts), BATCH):
            table.insert_many(inserts[start:start + BATCH]).execute()
        if stats:
            sign = -1 if direction == "maximize" else 1
            best = min(stats.values(), key=lambda s: (sign * s["mean"], s["first_run_id"]))
            db.execute_sql(f"UPDATE experiment SET best_mean = {marker} WHERE id = {marker}",
                           (best["mean"], experiment_id))


def upgrade(db: Database) -> None:
    class Experiment(Model):
        id = NeverReusedId()

        class Meta:
            database = db
            table_name = "experiment"

    class ConfigStat(Model):
        id = NeverReusedId()
        experiment = ForeignKeyField(Experiment, on_delete="CASCADE")
        config = CharField(max_length=64)
        params = TextField()
        n = IntegerField(default=0)
        mean = DoubleField(default=0.0)
        m2 = DoubleField(default=0.0)
        low = DoubleField(null=True)
        high = DoubleField(null=True)
        first_run_id = IntegerField(null=True)
        best_run_id = IntegerField(null=True)
        best_value = DoubleField(null=True)
        run_ids = TextField()

        class Meta:
            database = db
            table_name = "config_stat"
            indexes = ((("experiment", "config"), True), (("experiment", "mean"), False))

    db.create_tables([ConfigStat])
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.add_column("experiment", "best_mean", DoubleField(null=True)))
    _fill(db, ConfigStat)
