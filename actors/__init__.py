"""The Dramatiq workers: `dramatiq actors --processes P --threads T`.

The broker is set here, before any actor is imported, from the same `SWEEPLAB_*` settings the
API reads.
"""

from __future__ import annotations

import dramatiq

from actors.middleware import DatabaseConnection, PrefetchNoMoreThanThreads, RequireSchema
from service.broker import make_broker
from service.db import open_database
from service.settings import ensure_data_dirs, load_settings

settings = load_settings()
ensure_data_dirs(settings)
open_database(settings.database_url)
broker = make_broker(settings.broker_url)
broker.add_middleware(PrefetchNoMoreThanThreads())
broker.add_middleware(DatabaseConnection())
broker.add_middleware(RequireSchema(settings.database_location))
dramatiq.set_broker(broker)

from actors.aggregate import aggregate  # noqa: E402  (the broker must be set first)
from actors.train import train  # noqa: E402

# How often an infrastructure error (database, broker) is retried before the message is
# dead-lettered; the API's reconciler then sends it again, a bounded number of times.
train.options["max_retries"] = settings.train_retries

__all__ = ["aggregate", "broker", "settings", "train"]
