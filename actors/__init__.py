"""The Dramatiq workers: `dramatiq actors --processes P --threads T [--queues ...]`.

The broker is set here, before any actor is imported, from the same `SWEEPLAB_*` settings the
API reads. With `SWEEPLAB_API_URL` set the worker is remote: it reaches runs, images and
results through the API's worker routes and consumes `sweeplab_train` only.
"""

from __future__ import annotations

import dramatiq

from actors.context import WorkerContext, use_context
from actors.middleware import (
    GpuPerThread,
    PrefetchNoMoreThanThreads,
    StopWhenRefused,
)
from actors.registry import WorkerRegistry
from actors.stores import make_store
from actors.stores.base import RunStore
from service.dispatch.broker import make_broker
from service.execution.sandbox import check_sandbox
from service.settings import ensure_data_dirs, load_settings

settings = load_settings()
check_sandbox(settings.sandbox, settings.script_network)  # SWEEPLAB_SANDBOX=on: none, no start
ensure_data_dirs(settings)
broker = make_broker(settings.broker_url)
broker.add_middleware(PrefetchNoMoreThanThreads())
broker.add_middleware(GpuPerThread(settings.gpus))
if not settings.remote:  # a remote worker never opens the database: the API is its store
    from actors.stores.local import DatabaseConnection, RequireSchema
    from service.core.db import open_database

    open_database(settings.database_url)
    broker.add_middleware(DatabaseConnection())
    broker.add_middleware(RequireSchema(settings.database_location))
# Before the registry: a refused worker's last report is tried before it exits (the hooks
# after a stop run in reverse order)
refusals = StopWhenRefused()
broker.add_middleware(refusals)
run_store: RunStore = make_store(settings, on_refused=refusals.refused)
use_context(WorkerContext(settings, run_store))
# every `lease_s / 3`: a live worker is never shown as lost between two reports
broker.add_middleware(WorkerRegistry(report=run_store.report_worker, every_s=settings.lease_s / 3,
                                     gpus=settings.gpus, remote=settings.remote))
dramatiq.set_broker(broker)

from actors.train import train  # noqa: E402  (the broker must be set first)

if not settings.remote:  # the aggregate actor runs on the API's host, with the database
    from actors.aggregate import aggregate  # noqa: F401

# How often an infrastructure error (database, broker) is retried before the message is
# dead-lettered; the API's reconciler then sends it again, a bounded number of times.
train.options["max_retries"] = settings.train_retries

__all__ = ["broker", "train"]
