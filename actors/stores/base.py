"""What the train actor asks of the service, behind one small interface with two implementations.

A local worker (`LocalStore`) shares the API's host: it claims runs in the database and works in
the API's data directory. A remote worker (`actors.rest_store.RestStore`) has nothing but the
broker, the API's URL and a worker token: it does the same through the API's worker routes and
works in a data directory of its own. The actor starts, supervises and judges the script the same
way for both (like MLflow's `RestStore` and `SqlAlchemyStore` behind `AbstractStore`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.core.db import database
from service.execution.training import STDOUT_NAME, Outcome
from service.runs.attempts import requeue_attempt
from service.runs.curves import CurveFollower
from service.runs.state import Claim, claim_run, heartbeat
from service.settings import Settings
from service.sweeps.aggregate import record_and_aggregate
from service.sweeps.pruning import keep_going
from service.workers.registry import report_worker


@dataclass(frozen=True)
class RunSpec:
    """What a worker needs to know of a run to train it."""

    run_id: int
    experiment_id: int
    i: float
    j: int
    k: int
    timeout_s: float
    metric: str = "accuracy"  # the experiment's objective
    seed: int = 0
    aggregate_later: bool = False  # by the aggregate actor, not with the result (runstate)
    early_stopping: bool = False  # its experiment prunes: its curve is looked at as it grows


class StoreUnreachable(Exception):
    """The store could not be asked (the API is restarting, the link is down): try again."""


class Refused(Exception):
    """The API answered, and said no (4xx): retrying would not help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class WorkerRefused(Refused):
    """The API refuses this worker itself (401: a wrong worker token, or one the API has since
    changed). Nothing the worker asks will succeed: it stops taking messages
    (actors.middleware.StopWhenRefused) and leaves them to a worker the API takes."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.status = 401


class RunStore(ABC):
    @abstractmethod
    def claim(self, run_id: int, worker: str, lease_s: float) -> tuple[Claim, RunSpec | None]:
        """Take the run for `worker`, or say why not; the spec when the run exists."""

    @abstractmethod
    def snapshot(self, spec: RunSpec) -> Path:
        """The experiment's training images, laid out as the script expects."""

    @abstractmethod
    def run_dir(self, run_id: int) -> Path:
        """The folder the script runs in (and writes its model and logs to)."""

    @abstractmethod
    def heartbeat(self, spec: RunSpec, attempt: int, child_pgid: int | None = None) -> bool:
        """Renew the lease; False once the run is no longer this attempt's. Raises
        StoreUnreachable when the store cannot be asked."""

    @abstractmethod
    def finish(self, spec: RunSpec, attempt: int, worker: str, outcome: Outcome) -> bool:
        """Record the outcome (and keep the run folder), and aggregate its experiment with
        it; False when this attempt may no longer record (cancelled, taken over)."""

    @abstractmethod
    def requeue(self, spec: RunSpec, attempt: int, worker: str) -> None:
        """The worker is stopping mid-run: put the run back in the queue state."""

    @abstractmethod
    def report_worker(self, info: dict[str, Any]) -> None:
        """Say this worker process is alive (GET /api/v1/workers lists it)."""


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


def make_store(settings: Settings,
               on_refused: Callable[[str], None] = lambda problem: None) -> RunStore:
    """The API's worker routes for a remote worker, the database for a local one.
    `on_refused(problem)`: told each time the API refuses the remote worker itself."""
    if settings.remote:
        from actors.rest_store import RestStore  # requests is only needed there

        return RestStore(settings, on_refused)
    return LocalStore(settings)
