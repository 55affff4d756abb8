"""Cross-cutting worker concerns, as Dramatiq middleware."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from service.db import database


class DatabaseConnection(Middleware):
    """A database connection per message, closed after it, so none goes stale between."""

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        database.connect(reuse_if_open=True)

    def after_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        if not database.is_closed():
            database.close()

    after_skip_message = after_process_message


class PrefetchNoMoreThanThreads(Middleware):
    """Dramatiq prefetches twice its thread count. A prefetched training message would sit
    unstarted in this worker while another worker idles, so take only what the threads can run."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        worker.queue_prefetch = min(worker.queue_prefetch, worker.worker_threads)
