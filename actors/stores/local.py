"""The local store: a worker on the API's host claims runs in the database and works in the
API's data directory; with it, the middlewares that keep its database connection and check the
schema before it takes a message. A remote worker never imports this module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from actors.stores.base import CodeUnusable, RunStore
from service.contract import Claim, Outcome, RunSpec
from service.core.db import database
from service.execution.training import STDOUT_NAME
from service.migrate import schema_problem
from service.runs.attempts import requeue_attempt
from service.runs.curves import CurveFollower
from service.runs.state import claim_run, heartbeat
from service.settings import Settings
from service.storage import code_in
from service.sweeps.aggregate import record_and_aggregate
from service.sweeps.pruning import keep_going
from service.workers.registry import report_worker


class LocalStore(RunStore):
    """The database and the API's data directory, on the API's host."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.curves = CurveFollower()

    def claim(self, run_id: int, worker: str, lease_s: float) -> tuple[Claim, RunSpec | None]:
        claim = claim_run(run_id, worker, lease_s)
        return claim, None if claim.spec is None else RunSpec(**claim.spec)

    def snapshot(self, spec: RunSpec) -> Path:
        return self.settings.snapshots_dir / str(spec.experiment_id)

    def code_tree(self, spec: RunSpec) -> Path:
        assert spec.code is not None
        tree = code_in(self.settings.code_dir, spec.code["version"])
        if not tree.is_dir():
            raise CodeUnusable(f"code version {spec.code['version']} is missing from the "
                               f"code store: {tree}")
        return tree

    def run_dir(self, run_id: int) -> Path:
        return self.settings.runs_dir / str(run_id)

    def heartbeat(self, spec: RunSpec, attempt: int, child_pgid: int | None = None) -> bool:
        changes = {} if child_pgid is None else {"child_pgid": child_pgid}
        mine = heartbeat(spec.run_id, attempt, **changes)
        return mine and keep_going(self.curves, spec.run_id, self._stdout(spec), spec.metric)

    def finish(self, spec: RunSpec, attempt: int, worker: str, outcome: Outcome) -> bool:
        self.curves.finish(spec.run_id, self._stdout(spec), spec.metric)
        return record_and_aggregate(spec.run_id, spec.experiment_id, attempt, worker, outcome,
                                    inline=not spec.aggregate_later)

    def _stdout(self, spec: RunSpec) -> Path:
        return self.run_dir(spec.run_id) / STDOUT_NAME

    def requeue(self, spec: RunSpec, attempt: int, worker: str) -> None:
        requeue_attempt(spec.run_id, attempt, worker)

    def report_worker(self, info: dict[str, Any]) -> None:
        # a connection per report: the reporting thread must survive a database restart
        with database.connection_context():
            report_worker(info, self.settings.worker_retention_s)


class DatabaseConnection(Middleware):
    """Every message finds its thread's database connection open.

    The connection is kept between messages: opening one (and setting SQLite's pragmas) for
    each message cost more than the rest of a short run's bookkeeping. After a failed message
    it is closed, so a broken connection (PostgreSQL restarted) is not reused."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        database.connect(reuse_if_open=True)

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        if exception is not None and not database.is_closed():
            database.close()


class RequireSchema(Middleware):
    """A worker attached to the wrong database (an empty one, another data directory) would
    take messages it can only fail, until RabbitMQ dead-letters them. It refuses to start
    instead: a clear error and a non-zero exit."""

    def __init__(self, where: str) -> None:
        self.where = where

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        database.connect(reuse_if_open=True)
        problem = schema_problem()
        database.close()
        if problem:
            raise SystemExit(f"sweeplab worker refuses to start: the database {self.where} "
                             f"{problem}. Point SWEEPLAB_DATA_DIR / SWEEPLAB_DATABASE_URL at "
                             f"the API's database, and start the API (it migrates) or run "
                             f"`python -m service.migrate` first.")
