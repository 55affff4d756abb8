"""Sweeps that learn, second step: search strategies (random, TPE), early stopping and reuse.

An experiment keeps its search, its early-stopping rule, whether it reuses known results, and a
hash of its images' content. A run keeps its trial (the configuration's number in a random or
TPE search; 0 in a grid), where it was pruned, the pruner's own notes, the hash of the script
that produced it and the run it was reused from. Two trials of a search may ask for the same
parameters, so the unique key gains the trial."""

from __future__ import annotations

from peewee import BooleanField, CharField, Database, FloatField, IntegerField, TextField
from playhouse.migrate import SchemaMigrator, migrate

OLD_KEY = "run_experiment_id_param_i_param_j_param_k_seed"


def upgrade(db: Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    migrate(
        migrator.add_column("experiment", "search", TextField(null=True)),
        migrator.add_column("experiment", "early_stopping", TextField(null=True)),
        # experiments made before reuse existed never reused anything
        migrator.add_column("experiment", "reuse", BooleanField(default=False)),
        migrator.add_column("experiment", "images_sha256", CharField(max_length=64, null=True)),
        migrator.add_column("run", "trial", IntegerField(default=0)),
        migrator.add_column("run", "reused_from", IntegerField(null=True)),
        migrator.add_column("run", "pruned_step", IntegerField(null=True)),
        migrator.add_column("run", "pruned_value", FloatField(null=True)),
        migrator.add_column("run", "pruner_state", TextField(null=True)),
        migrator.add_column("run", "script_sha256", CharField(max_length=64, null=True)),
        migrator.drop_index("run", OLD_KEY),
        migrator.add_index("run", ("experiment_id", "trial", "param_i", "param_j", "param_k",
                                   "seed"), unique=True),
    )
