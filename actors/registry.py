"""Each worker process registers itself with the API, keeps saying it is alive, and says it
stopped when it stops cleanly.

The report goes through the worker's store (the database for a local worker, the API over HTTP
for a remote one), from a thread of its own: a worker busy with long trainings still reports,
and one whose reports stop is shown lost once the lease has passed. A remote worker registers
before it takes any message, and refuses to start when the API refuses it or cannot be reached.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from service.execution.supervise import this_worker
from service.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)
STOPPED_REPORT_WAIT_S = 5.0  # how long a stopped worker waits to say so, at most


@cache
def code_version() -> str:
    """The checkout's short commit, read once; "unknown" outside a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else "unknown"


def consumed_queues(broker: dramatiq.Broker, worker: Any) -> list[str]:
    """The queues a worker takes messages from: its `--queues`, else every declared queue.
    Delay queues ("train.DQ") are the same queue to a person reading the list."""
    chosen = getattr(worker, "consumer_whitelist", None) or broker.get_declared_queues()
    return sorted({q_name(queue) for queue in chosen})


class WorkerRegistry(Middleware):
    """Reports this worker process at boot, then every `every_s` seconds until it stops, and
    then that it stopped."""

    def __init__(self, report: Callable[[dict[str, Any]], None], every_s: float,
                 queues: list[str] | None = None, gpus: Sequence[str] = (),
                 remote: bool = False) -> None:
        self.report = report
        self.every_s = every_s
        self.queues = queues
        self.gpus = list(gpus)
        self.remote = remote
        self._stops: dict[int, tuple[threading.Event, threading.Thread]] = {}

    def info(self, broker: dramatiq.Broker, worker: Any) -> dict[str, Any]:
        return {"name": this_worker(), "host": socket.gethostname(), "pid": os.getpid(),
                "threads": worker.worker_threads, "gpus": self.gpus,
                "version": code_version(),
                "queues": self.queues or consumed_queues(broker, worker),
                "remote": self.remote}

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        info = self.info(broker, worker)
        if self.remote:
            # Before any message: with a wrong token or an API it cannot reach, a remote worker
            # could only fail and retry each message until it is dead-lettered. SystemExit
            # passes Dramatiq's middleware hooks: the process exits non-zero, saying why.
            try:
                self.report(dict(info))
            except Exception as error:
                raise SystemExit(f"sweeplab worker refuses to start: {error}") from None
        stop = threading.Event()
        thread = threading.Thread(target=self._keep_reporting, args=(info, stop, self.remote),
                                  daemon=True, name="sweeplab-worker-registry")
        self._stops[id(worker)] = (stop, thread)
        thread.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        """Once the worker has stopped (its runs put back), its last report says so."""
        stop, thread = self._stops.pop(id(worker), (None, None))
        if stop is None or thread is None:
            return
        stop.set()
        # A report stuck on an unreachable API must not hold up the stop: the thread is a
        # daemon, and the worker shows lost a lease later instead of stopped.
        thread.join(timeout=STOPPED_REPORT_WAIT_S)

    def _keep_reporting(self, info: dict[str, Any], stop: threading.Event,
                        reported: bool) -> None:
        if not reported:
            self._try_report(info)
        while not stop.wait(self.every_s):
            self._try_report(info)
        # from this thread too: the last report is never overtaken by one saying it is alive
        self._try_report({**info, "stopped": True})

    def _try_report(self, info: dict[str, Any]) -> None:
        try:
            self.report(dict(info))
        except Exception as error:  # the API may be down or restarting: try again later
            logger.warning("could not report this worker (%s): %s", info["name"], error)
