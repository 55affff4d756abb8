"""Worker configuration: Dramatiq's defaults are wrong for training runs."""

from __future__ import annotations

from dramatiq import Worker

from service.dispatch.broker import AGGREGATE_QUEUE, TRAIN_QUEUE


def test_prefetch_is_no_larger_than_the_thread_count(stub_broker, db):
    # Given a worker with 3 threads (Dramatiq would prefetch 6)
    worker = Worker(stub_broker, worker_threads=3)
    # When it boots
    worker.start()
    try:
        # Then it takes no more messages than it can start
        assert worker.queue_prefetch == 3
        assert {c.prefetch for c in worker.consumers.values()
                if not c.queue_name.endswith(".DQ")} == {3}
    finally:
        worker.stop()


def test_every_actor_states_its_limits(stub_broker):
    import actors

    for actor in (actors.train, actors.aggregate):
        assert {"time_limit", "max_retries", "min_backoff", "max_backoff"} <= set(actor.options)
    assert actors.train.queue_name == TRAIN_QUEUE
    assert actors.aggregate.queue_name == AGGREGATE_QUEUE
    assert actors.train.options["notify_shutdown"] is True
