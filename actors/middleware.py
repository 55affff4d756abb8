"""Cross-cutting worker concerns, as Dramatiq middleware."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from actors import gpus
from service.db import database
from service.migrate import schema_problem


class DatabaseConnection(Middleware):
    """Every message finds its thread's database connection open.

    The connection is kept between messages: opening one (and setting SQLite's pragmas) for
    each message cost more than the rest of a short run's bookkeeping. After a failed message
    it is closed, so a broken connection (PostgreSQL restarted) is not reused."""

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        database.connect(reuse_if_open=True)

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        if exception is not None and not database.is_closed():
            database.close()


class PrefetchNoMoreThanThreads(Middleware):
    """Dramatiq prefetches twice its thread count. A prefetched training message would sit
    unstarted in this worker while another worker idles, so take only what the threads can run."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        worker.queue_prefetch = min(worker.queue_prefetch, worker.worker_threads)


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


class GpuPerThread(Middleware):
    """`SWEEPLAB_GPUS`: one GPU per worker thread; a worker with more threads refuses to start."""

    def __init__(self, gpu_ids: tuple[str, ...]) -> None:
        self.gpu_ids = gpu_ids

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        gpus.configure(self.gpu_ids, worker.worker_threads)
