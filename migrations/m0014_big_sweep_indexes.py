"""What lets every result and every poll of a big sweep cost the same at 10,000 runs as at 10
(issue 24):

- an index of each experiment's runs by status: whether an experiment has runs left is one
  probe of it, and its counts by status are read from the index without the runs' rows;
- each run event's experiment, indexed with the event's id: the newest event of an experiment
  (which tells a kept view it is stale) is then the end of an index, not a walk over all its
  runs' events.
"""

from __future__ import annotations

from peewee import Database, ForeignKeyField, Model
from playhouse.migrate import SchemaMigrator, migrate

from migrations.frozen_fields import NeverReusedId


def upgrade(db: Database) -> None:
    class Experiment(Model):
        id = NeverReusedId()

        class Meta:
            database = db
            table_name = "experiment"

    migrator = SchemaMigrator.from_database(db)
    experiment = ForeignKeyField(Experiment, null=True, on_delete="CASCADE",
                                 field=Experiment.id, index=False)
    migrate(migrator.add_index("run", ("experiment_id", "status"), False),
            migrator.add_column("run_event", "experiment_id", experiment))
    db.execute_sql("UPDATE run_event SET experiment_id = "
                   "(SELECT experiment_id FROM run WHERE run.id = run_event.run_id)")
    migrate(migrator.add_index("run_event", ("experiment_id", "id"), False))
