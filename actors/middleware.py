"""Cross-cutting worker concerns, as Dramatiq middleware."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from actors import gpus

log = logging.getLogger("sweeplab.worker")
# A message put back waits this long: the stopping worker, still consuming for up to a second,
# would otherwise take it straight back, again and again.
PUT_BACK_DELAY_MS = 1000


class PrefetchNoMoreThanThreads(Middleware):
    """Dramatiq prefetches twice its thread count. A prefetched training message would sit
    unstarted in this worker while another worker idles, so take only what the threads can run."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        worker.queue_prefetch = min(worker.queue_prefetch, worker.worker_threads)


class GpuPerThread(Middleware):
    """`SWEEPLAB_GPUS`: one GPU per worker thread; a worker with more threads refuses to start."""

    def __init__(self, gpu_ids: tuple[str, ...]) -> None:
        self.gpu_ids = gpu_ids

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        gpus.configure(self.gpu_ids, worker.worker_threads)


def _stop_this_process() -> None:
    """Dramatiq's own stop, as on SIGTERM: the worker process finishes (and puts back) what
    it holds, then exits; its main process then stops too."""
    os.kill(os.getpid(), signal.SIGTERM)


class StopWhenRefused(Middleware):
    """A remote worker the API no longer takes (its worker token was changed on the API's
    host) would take every train message, fail it and retry it until RabbitMQ dead-letters it,
    its run left `queued`. Once the store says the API refuses it (`refused`), it stops instead:
    each message it is still handed goes back to the queue unchanged, its retries untouched,
    for a worker the API takes, and the worker process stops and exits non-zero saying why.
    (A worker refused at its start never gets this far: actors.registry refuses to start.)"""

    def __init__(self, stop: Callable[[], None] = _stop_this_process) -> None:
        self.stop = stop
        self.problem: str | None = None
        self.booted = False
        self._lock = threading.Lock()

    def refused(self, problem: str) -> None:
        """The store heard the API refuse this worker; called from any thread, any number of
        times."""
        with self._lock:
            first, self.problem = self.problem is None, problem
        if first and self.booted:
            log.critical("sweeplab worker stops: %s", problem)
            self.stop()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.booted = True

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if self.problem is not None:
            raise SkipMessage(self.problem)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """A message skipped here, or by the train actor when the API refused its claim."""
        if self.problem is None:
            return
        log.warning("%s goes back to the queue: this worker is refused", message)
        broker.enqueue(message.copy(), delay=PUT_BACK_DELAY_MS)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        if self.problem is not None:
            # A message for whoever reads the log, and a non-zero exit for systemd
            raise SystemExit(f"sweeplab worker stopped: {self.problem}")
