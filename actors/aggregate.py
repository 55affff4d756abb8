"""`aggregate(experiment_id)`: move an experiment on after a run ended. A TPE search asks for
its next configurations (and their messages go out); then the experiment's status and best, and
its model's best, are recomputed."""

from __future__ import annotations

import dramatiq

from actors.context import worker_context
from service.dispatch.broker import AGGREGATE_ACTOR, AGGREGATE_QUEUE
from service.dispatch.publish import publish_experiment


@dramatiq.actor(actor_name=AGGREGATE_ACTOR, queue_name=AGGREGATE_QUEUE, time_limit=60_000,
                max_retries=10, min_backoff=500, max_backoff=30_000)
def aggregate(experiment_id: int) -> None:
    # Cheap and idempotent: a retry (say, after "database is locked") simply recomputes, and a
    # request arriving while another pass waits to read is left to that pass.
    publish_experiment(dramatiq.get_broker(), experiment_id, worker_context().settings)
