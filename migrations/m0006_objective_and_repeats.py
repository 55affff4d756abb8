"""Sweeps that learn, first step: an objective (any printed metric, maximised or minimised)
and repeated seeds. An experiment keeps its objective and repeat count; a run its seed and the
objective's value. A grid point now has one run per seed, so the unique key gains the seed."""

from __future__ import annotations

from peewee import CharField, Database, FloatField, IntegerField
from playhouse.migrate import SchemaMigrator, migrate

OLD_KEY = "run_experiment_id_param_i_param_j_param_k"


def upgrade(db: Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(
        migrator.add_column("experiment", "objective_metric",
                            CharField(max_length=100, default="accuracy")),
        migrator.add_column("experiment", "objective_direction",
                            CharField(max_length=10, default="maximize")),
        migrator.add_column("experiment", "repeats", IntegerField(default=1)),
        migrator.add_column("run", "seed", IntegerField(default=0)),
        migrator.add_column("run", "value", FloatField(null=True)),
        migrator.drop_index("run", OLD_KEY),
        migrator.add_index("run", ("experiment_id", "param_i", "param_j", "param_k", "seed"),
                           unique=True),
    )
    # Every run that succeeded so far was judged by its accuracy: that is its value.
    db.execute_sql("UPDATE run SET value = accuracy WHERE accuracy IS NOT NULL")
