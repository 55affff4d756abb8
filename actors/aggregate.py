"""`aggregate(experiment_id)`: recompute an experiment's status and best, and its model's best."""

from __future__ import annotations

import dramatiq

from service.aggregate import aggregate_experiment
from service.broker import AGGREGATE_ACTOR, AGGREGATE_QUEUE


@dramatiq.actor(actor_name=AGGREGATE_ACTOR, queue_name=AGGREGATE_QUEUE, time_limit=60_000,
                max_retries=10, min_backoff=500, max_backoff=30_000)
def aggregate(experiment_id: int) -> None:
    # Cheap and idempotent: a retry (say, after "database is locked") simply recomputes, and a
    # request arriving while another pass waits to read is left to that pass.
    aggregate_experiment(experiment_id)
