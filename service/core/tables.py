"""The tables. Migrations in `migrations/` create exactly this schema (a test checks it)."""

from __future__ import annotations

import json
from typing import Any

from peewee import (
    SQL,
    AutoField,
    BooleanField,
    CharField,
    Context,
    DateTimeField,
    DoubleField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    NodeList,
    SqliteDatabase,
    TextField,
)

from service.contract import GRID, ExperimentStatus, RunStatus
from service.core.db import database
from service.core.timeutil import utcnow


class JSONField(TextField):
    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class OrderedJSONField(JSONField):
    """JSON whose objects keep their keys' order: a grid's and a run's parameters, which a
    script gets in the order the grid names them."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value)


class IdField(AutoField):
    """An id never given twice. SQLite reuses the highest deleted rowid unless the key is
    AUTOINCREMENT; PostgreSQL's sequences never reuse, and take no such keyword."""

    def ddl(self, ctx: Context) -> NodeList:
        node_list = super().ddl(ctx)
        bound = self.model._meta.database
        if isinstance(getattr(bound, "obj", bound), SqliteDatabase):
            return NodeList((node_list, SQL("AUTOINCREMENT")))
        return node_list


class BaseModel(Model):
    class Meta:
        database = database


class MLModel(BaseModel):
    id = IdField()
    name = CharField(max_length=200, unique=True)
    description = TextField(default="")
    created_at = DateTimeField(default=utcnow)
    best_run_id = IntegerField(null=True)

    class Meta:
        table_name = "model"


class Image(BaseModel):
    """One stored image file, named by the SHA-256 of its bytes."""

    sha256 = CharField(max_length=64, primary_key=True)
    extension = CharField(max_length=10)
    size_bytes = IntegerField()
    width = IntegerField()
    height = IntegerField()
    created_at = DateTimeField(default=utcnow)


class ModelImage(BaseModel):
    id = IdField()
    model = ForeignKeyField(MLModel, backref="images", on_delete="CASCADE")
    image = ForeignKeyField(Image, backref="uses", on_delete="CASCADE")
    model_id: int  # peewee's accessors of the keys' values, which its stubs do not know
    image_id: str
    label = CharField(max_length=100, null=True)
    original_name = CharField(max_length=255, default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "model_image"
        indexes = ((("model", "image"), True),)


class Experiment(BaseModel):
    id = IdField()
    model = ForeignKeyField(MLModel, backref="experiments", on_delete="CASCADE")
    model_id: int  # peewee's id accessor of the key above, unknown to its stubs
    status = CharField(max_length=20, default=ExperimentStatus.CREATED.value)
    grid = OrderedJSONField()  # {name: values or a range}, in the order scripts get them
    timeout_s = FloatField()
    image_count = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    best_run_id = IntegerField(null=True)
    # True from the start of publishing until every run's message reached RabbitMQ; the
    # reconciler finishes the job if the API crashed or the broker was down meanwhile.
    unpublished = BooleanField(default=False)
    objective_metric = CharField(max_length=100, default="accuracy")
    objective_direction = CharField(max_length=10, default="maximize")
    repeats = IntegerField(default=1)  # runs per grid point, seeds 0 .. repeats - 1
    search = JSONField(null=True)  # {"strategy": "random" | "tpe", ...}; None: the grid
    early_stopping = JSONField(null=True)  # {"rule": ..., "min_step": M}; None: never
    reuse = BooleanField(default=False)  # take known results instead of training again
    images_sha256 = CharField(max_length=64, null=True)  # of its images' content and labels
    # the model's code version it trains with (CodeVersion.version); None: the deployment's
    # train.py and test.py. Pinned at creation, as the image snapshot is.
    code_version = CharField(max_length=64, null=True)
    best_mean = DoubleField(null=True)  # its best configuration's mean (the model's best)

    @property
    def strategy(self) -> str:
        """grid, random or tpe."""
        return (self.search or {}).get("strategy", GRID)


class Run(BaseModel):
    id = IdField()
    experiment = ForeignKeyField(Experiment, backref="runs", on_delete="CASCADE")
    experiment_id: int  # peewee's id accessor of the key above, unknown to its stubs
    status = CharField(max_length=20, default=RunStatus.QUEUED.value, index=True)
    accuracy = FloatField(null=True)
    attempts = IntegerField(default=0)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    duration_s = FloatField(null=True)
    exit_code = IntegerField(null=True)
    error = TextField(null=True)
    worker = CharField(max_length=255, null=True)
    child_pgid = IntegerField(null=True)
    heartbeat_at = DateTimeField(null=True)
    # when its message was last sent (queued) or re-sent by the reconciler (running)
    nudged_at = DateTimeField(null=True)
    dead_letters = IntegerField(default=0)  # times its message was dead-lettered and re-sent
    seed = IntegerField(default=0)  # SWEEPLAB_SEED of its script
    value = FloatField(null=True)  # its experiment's objective, as the script printed it
    trial = IntegerField(default=0)  # its configuration's number in a random or TPE search
    reused_from = IntegerField(null=True)  # the run whose result (and folder) it took
    pruned_step = IntegerField(null=True)  # the step, and the value, at which it was pruned
    pruned_value = FloatField(null=True)
    pruner_state = JSONField(null=True)  # what Optuna's pruner noted of it (rungs reached)
    script_sha256 = CharField(max_length=64, null=True)  # of the train script that ran it
    reused_from_deleted = BooleanField(default=False)  # the run it was reused from is gone
    params = OrderedJSONField()  # {name: JSON scalar}, in its experiment's grid's order
    config = CharField(max_length=64)  # sweeps.grid.config_key(params): its identity

    class Meta:
        # Exactly one run per configuration and seed of an experiment, whoever inserts it; and
        # an experiment's runs by status (whether any is left, counts), read from the index.
        indexes = ((("experiment", "trial", "config", "seed"), True),
                   (("experiment", "status"), False))


class RunEvent(BaseModel):
    """Every change of a run's status: from what, to what, when and by whom."""

    id = IdField()
    run = ForeignKeyField(Run, backref="events", on_delete="CASCADE")
    run_id: int  # peewee's id accessor of the key above, unknown to its stubs
    from_status = CharField(max_length=20)
    to_status = CharField(max_length=20)
    actor = CharField(max_length=255)
    reason = TextField(null=True)
    at = DateTimeField(default=utcnow)
    # its run's experiment, so that an experiment's newest event is the end of the index
    # below (null only as a column added to a filled table must be: m0014 filled every row)
    experiment = ForeignKeyField(Experiment, null=True, on_delete="CASCADE", index=False)

    class Meta:
        table_name = "run_event"
        indexes = ((("experiment", "id"), False),)


class RunPoint(BaseModel):
    """A point of a run's learning curve: the objective's value the script printed at a step."""

    id = IdField()
    run = ForeignKeyField(Run, backref="points", on_delete="CASCADE")
    run_id: int  # peewee's id accessor of the key above, unknown to its stubs
    step = IntegerField()
    value = FloatField()

    class Meta:
        table_name = "run_point"
        indexes = ((("run", "step"), True),)


class SchemaMigration(BaseModel):
    version = CharField(max_length=100, primary_key=True)
    applied_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "schema_migration"


class CodeVersion(BaseModel):
    """One tree of a model's code, named by the SHA-256 of its files (their paths and content
    hashes); its files lie once per deployment under the data directory's code store."""

    id = IdField()
    model = ForeignKeyField(MLModel, backref="code_versions", on_delete="CASCADE")
    model_id: int  # peewee's id accessor of the key above, unknown to its stubs
    version = CharField(max_length=64)
    files = JSONField()  # [{"path", "size", "sha256"}], sorted by path
    train = CharField(max_length=255)  # the entry points, relative to the tree's root
    test = CharField(max_length=255, null=True)
    requirements = CharField(max_length=255, null=True)
    defaults = OrderedJSONField(null=True)  # sweeplab.toml's grid (its order) and objective
    created_at = DateTimeField(default=utcnow)
    uploaded_at = DateTimeField(default=utcnow)  # its last upload: the newest is the current

    class Meta:
        table_name = "code_version"
        indexes = ((("model", "version"), True),)


class WorkerProcess(BaseModel):
    """One worker process as it last reported itself; silent past the lease, it is shown lost,
    unless its last report said it stopped."""

    id = IdField()
    name = CharField(max_length=255, unique=True)  # "host:pid", as runs carry it in `worker`
    host = CharField(max_length=255)
    pid = IntegerField()
    threads = IntegerField()
    gpus = JSONField()  # list of str
    version = CharField(max_length=100)
    queues = JSONField()  # list of str
    remote = BooleanField()
    started_at = DateTimeField(default=utcnow)
    last_seen_at = DateTimeField(default=utcnow)
    stopped_at = DateTimeField(null=True)  # its last report said it stopped cleanly

    class Meta:
        table_name = "worker_process"


class ConfigStat(BaseModel):
    """One configuration's succeeded runs of an experiment, as running statistics (Welford's
    n, mean and M2), updated in each result's transaction: a result costs the same at the
    10,000th run as at the first. sweeps.aggregate.recompute_statistics is the repair path."""

    id = IdField()
    experiment = ForeignKeyField(Experiment, on_delete="CASCADE")
    experiment_id: int  # peewee's id accessor of the key above, unknown to its stubs
    config = CharField(max_length=64)
    params = OrderedJSONField()
    n = IntegerField(default=0)
    mean = DoubleField(default=0.0)
    m2 = DoubleField(default=0.0)  # the sum of squared differences from the mean
    low = DoubleField(null=True)  # equal to high with n > 1: every seed gave the same value
    high = DoubleField(null=True)
    first_run_id = IntegerField(null=True)  # ties between configurations: the earlier first
    best_run_id = IntegerField(null=True)  # its best-scoring run (ties: the earlier)
    best_value = DoubleField(null=True)
    run_ids = JSONField(default=list)  # its succeeded runs, in id order

    class Meta:
        table_name = "config_stat"
        indexes = ((("experiment", "config"), True),
                   (("experiment", "mean", "first_run_id"), False))


ALL_TABLES: list[type[BaseModel]] = [MLModel, Image, ModelImage, Experiment, Run, RunEvent,
                                     RunPoint, WorkerProcess, CodeVersion, ConfigStat]
