"""Worker configuration: Dramatiq's defaults are wrong for training runs; heartbeats follow
the lease."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from dramatiq import Worker

from service.dispatch.broker import AGGREGATE_QUEUE, TRAIN_QUEUE


def test_prefetch_is_no_larger_than_the_thread_count(stub_broker, db):
    # Given a worker with 3 threads (Dramatiq would prefetch 6)
    worker = Worker(stub_broker, worker_timeout=100, worker_threads=3)
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


class HeartbeatCounter:
    """The part of a run store a LeaseKeeper uses while its script runs, counting heartbeats."""

    def __init__(self) -> None:
        self.beats = 0

    def heartbeat(self, spec, attempt: int, child_pgid: int | None = None) -> bool:
        self.beats += 1
        return True

    def run_dir(self, run_id: int) -> Path:
        return Path("/nonexistent")  # no output: early stopping has no curve to look at


@pytest.mark.parametrize(("lease_s", "early_stopping", "every_s", "poll_s"), [
    (30.0, False, 2.0, 1.0),  # the default lease: every 2 s, as always
    (30.0, True, 2.0, 0.25),
    (6.0, False, 2.0, 1.0),
    (3.0, False, 1.0, 0.5),
    (1.5, False, 0.5, 0.25),
    (0.75, True, 0.25, 0.125),
])
def test_a_lease_is_renewed_every_third_of_it_and_at_least_every_2_s(
        monkeypatch, lease_s, early_stopping, every_s, poll_s):
    # Given a keeper for a run just claimed with this lease, on a clock the test moves
    from actors.train import LeaseKeeper
    from service.contract import RunSpec

    clock = [0.0]
    monkeypatch.setattr(sys.modules["actors.train"], "time",
                        SimpleNamespace(monotonic=lambda: clock[0]))
    store = HeartbeatCounter()
    keeper = LeaseKeeper(store, RunSpec(1, 1, 0.1, 1, 1, 60.0, early_stopping=early_stopping),
                         attempt=1, lease_s=lease_s)
    # Then the supervisor asks it twice a heartbeat (or as often as it looks at curves)
    assert keeper.poll_s == poll_s
    # And it sends a heartbeat once a third of the lease (at most 2 s) has passed, not before
    assert keeper(4242) is True and store.beats == 0  # the script's group, noted
    beats = []
    for at in (every_s * 0.9, every_s, every_s * 1.9, every_s * 2):
        clock[0] = at
        assert keeper(None) is True
        beats.append(store.beats)
    assert beats == [0, 1, 1, 2]
