"""What the train actor asks of the service, behind one small interface with two implementations.

A local worker (`actors.stores.local.LocalStore`) shares the API's host: it claims runs in the
database and works in the API's data directory. A remote worker (`actors.stores.rest.RestStore`)
has nothing but the
broker, the API's URL and a worker token: it does the same through the API's worker routes and
works in a data directory of its own. The actor starts, supervises and judges the script the same
way for both (like MLflow's `RestStore` and `SqlAlchemyStore` behind `AbstractStore`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from service.contract import Claim, Outcome, RunSpec


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


class CodeUnusable(Exception):
    """The run's code version cannot be had on this host (the API has no such version, or
    what arrived is not it): the run fails with this reason, rather than run other code."""


class RunStore(ABC):
    @abstractmethod
    def claim(self, run_id: int, worker: str, lease_s: float) -> tuple[Claim, RunSpec | None]:
        """Take the run for `worker`, or say why not; the spec when the run exists."""

    @abstractmethod
    def snapshot(self, spec: RunSpec) -> Path:
        """The experiment's training images, laid out as the script expects."""

    @abstractmethod
    def code_tree(self, spec: RunSpec) -> Path:
        """The tree of the run's code version (`spec.code`), on this host; CodeUnusable
        when it cannot be had."""

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
