"""No run stays queued without a message that will deliver it: dead letters are sent again (and
a run whose message keeps dying ends `failed` with the error), lost messages are replaced, and a
worker attached to a database without the schema refuses to start. An aggregate message for an
experiment deleted meanwhile ends quietly, and one that died anyway is taken back."""

from __future__ import annotations

import asyncio
import importlib
import time
from datetime import timedelta

import peewee
import pytest
from dramatiq import Worker

from actors.aggregate import aggregate
from actors.context import worker_context
from service.core.db import database, open_database
from service.core.tables import Experiment, Run
from service.core.timeutil import utcnow
from service.dispatch.broker import AGGREGATE_QUEUE, TRAIN_QUEUE, make_broker, send_aggregate
from service.dispatch.publish import MAX_DEAD_LETTERS, reconcile
from tests.api_support import SMALL, make_model, started_run, upload_two_labels, wait_for_status
from tests.e2e_support import VirtualHost

train_module = importlib.import_module("actors.train")  # `actors.train` is the actor


async def dead_lettered(broker, timeout: float = 20) -> None:
    """Wait for one dead-lettered train message (not `broker.join`: an earlier test's worker
    may have left a task unfinished on the shared stub queue)."""
    deadline = time.monotonic() + timeout
    while len(broker.dead_letters_by_queue[TRAIN_QUEUE]) != 1:
        assert time.monotonic() < deadline, "no message was dead-lettered"
        await asyncio.sleep(0.05)


async def test_a_message_dead_on_every_delivery_fails_its_run_with_the_error(
        client, db, settings, stub_broker, stub_worker, monkeypatch):
    # Given a worker whose every train message raises (its database is unreachable)
    def unreachable(*args, **kwargs):
        raise peewee.OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(worker_context().store, "claim", unreachable)
    monkeypatch.setitem(train_module.train.options, "max_retries", 0)
    experiment_id, run_id = await started_run(client)
    # When its message is dead-lettered, again and again, and the reconciler passes each time
    for round_number in range(1, MAX_DEAD_LETTERS + 1):
        await dead_lettered(stub_broker)
        assert reconcile(settings, stub_broker)["dead_lettered"] == 1
        run = Run.get_by_id(run_id)
        if round_number < MAX_DEAD_LETTERS:  # Then it is sent again while the bound allows
            assert (run.status, run.dead_letters) == ("queued", round_number)
    # Then the run ends failed with the error that killed its messages, and the experiment too
    run = Run.get_by_id(run_id)
    assert run.status == "failed"
    assert "dead-lettered 3 times" in run.error and "Connection refused" in run.error
    done = await wait_for_status(client, experiment_id, {"failed"})
    assert done["runs"][0]["error"] == run.error


async def test_a_dead_letter_recovers_once_the_fault_is_gone(client, db, settings, stub_broker,
                                                             stub_worker, monkeypatch):
    real_claim = worker_context().store.claim
    monkeypatch.setattr(worker_context().store, "claim", lambda *a: (_ for _ in ()).throw(
        peewee.OperationalError("database is locked")))
    monkeypatch.setitem(train_module.train.options, "max_retries", 0)
    experiment_id, _ = await started_run(client)
    await dead_lettered(stub_broker)
    monkeypatch.setattr(worker_context().store, "claim", real_claim)
    reconcile(settings, stub_broker)
    done = await wait_for_status(client, experiment_id, {"completed"})
    assert done["counts"]["succeeded"] == 1


async def test_a_queued_run_whose_message_is_gone_is_sent_again(client, db, settings,
                                                                stub_broker):
    # Given a started run whose message was taken and dropped (a worker on another database)
    experiment_id, run_id = await started_run(client)
    stub_broker.flush(TRAIN_QUEUE)
    # Then nothing happens within a lease: it may still be on its way
    assert reconcile(settings, stub_broker)["requeued"] == 0
    # But past a lease, with nothing in the queue, it is sent again, once per lease
    Run.update(nudged_at=utcnow() - timedelta(seconds=settings.lease_s + 1)).execute()
    assert reconcile(settings, stub_broker)["requeued"] == 1
    assert stub_broker.queues[TRAIN_QUEUE].qsize() == 1
    assert reconcile(settings, stub_broker)["requeued"] == 0
    # And not while the queue holds messages (they may be its)
    Run.update(nudged_at=utcnow() - timedelta(seconds=settings.lease_s + 1)).execute()
    assert reconcile(settings, stub_broker)["requeued"] == 0
    assert Experiment.get_by_id(experiment_id).status == "running"


def test_a_worker_on_a_database_without_the_schema_refuses_to_start(tmp_path, stub_broker):
    open_database(f"sqlite:///{tmp_path / 'empty.db'}")
    worker = Worker(stub_broker, worker_timeout=100, worker_threads=1)
    with pytest.raises(SystemExit, match="refuses to start.*has no sweeplab schema"):
        worker.start()
    worker.stop()
    database.close()


async def test_no_run_is_taken_for_silent_in_the_first_lease_after_the_api_starts(
        client, db, settings, stub_broker):
    # Given a running run whose worker has not been heard for longer than a lease
    _, run_id = await started_run(client)
    stub_broker.flush(TRAIN_QUEUE)
    long_ago = utcnow() - timedelta(seconds=settings.lease_s + 1)
    Run.update(status="running", heartbeat_at=long_ago, nudged_at=None).where(
        Run.id == run_id).execute()
    # When the API has just started (its workers could not reach it while it was down)
    just_started = reconcile(settings, stub_broker, listening_since=utcnow())
    # Then it waits; once it has listened for a lease, the run is nudged
    assert just_started["nudged"] == 0
    assert reconcile(settings, stub_broker, listening_since=long_ago)["nudged"] == 1


async def test_an_aggregate_for_an_experiment_deleted_meanwhile_ends_quietly(
        client, db, stub_broker, stub_worker, monkeypatch):
    # Given a TPE search that ended, whose model was deleted just after its last run
    monkeypatch.setitem(aggregate.options, "max_retries", 0)  # a raise would die at once
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    created = await client.post(f"/api/v1/models/{model_id}/experiments", json={
        "grid": {"i": [0.1, 0.2], "j": [1], "k": [5]},
        "search": {"strategy": "tpe", "runs": 2, "parallel": 1}})
    experiment_id = (await created.json())["id"]
    await wait_for_status(client, experiment_id, {"completed"})
    stub_broker.join(AGGREGATE_QUEUE)
    assert (await client.delete(f"/api/v1/models/{model_id}")).status == 204
    # When the aggregate message of that last run arrives only now
    send_aggregate(stub_broker, experiment_id)
    # Then the actor ends without raising: nothing is retried nor dead-lettered
    stub_broker.join(AGGREGATE_QUEUE, fail_fast=True)
    stub_worker.join()
    assert stub_broker.dead_letters_by_queue[AGGREGATE_QUEUE] == []


def dead_letter_on_rabbitmq(broker, experiment_ids: list[int], timeout: float = 20) -> None:
    """Send aggregate messages and refuse each, as a worker does after an actor's last retry:
    RabbitMQ itself moves them to the dead-letter queue."""
    for experiment_id in experiment_ids:
        send_aggregate(broker, experiment_id)
    deadline = time.monotonic() + timeout
    refused = 0
    while refused < len(experiment_ids):
        method, _, _ = broker.channel.basic_get(queue=AGGREGATE_QUEUE, auto_ack=False)
        if method is not None:
            broker.channel.basic_nack(method.delivery_tag, requeue=False)
            refused += 1
        assert time.monotonic() < deadline, "the aggregate messages never arrived"
    while broker.get_queue_message_counts(AGGREGATE_QUEUE)[2] != len(experiment_ids):
        assert time.monotonic() < deadline, "RabbitMQ did not dead-letter the messages"
        time.sleep(0.05)


@pytest.mark.e2e
async def test_aggregate_messages_dead_lettered_on_rabbitmq_are_taken_back(
        client, db, settings, stub_worker):
    # Given a finished experiment whose last aggregate died (its best was never recorded), and
    # an experiment deleted since its aggregate died
    experiment_id, run_id = await started_run(client)
    await wait_for_status(client, experiment_id, {"completed"})
    Experiment.update(best_run_id=None).where(Experiment.id == experiment_id).execute()
    model_id = await make_model(client, name="other")
    await upload_two_labels(client, model_id)
    waiting = await client.post(f"/api/v1/models/{model_id}/experiments", json={
        "grid": SMALL, "start": False})
    deleted_id = (await waiting.json())["id"]
    assert (await client.delete(f"/api/v1/experiments/{deleted_id}")).status == 204
    with VirtualHost() as url:
        broker = make_broker(url)
        try:
            broker.declare_queue(AGGREGATE_QUEUE, ensure=True)
            dead_letter_on_rabbitmq(broker, [experiment_id, deleted_id])
            # When the reconciler passes
            counts = reconcile(settings, broker)
            # Then both are taken out of the dead-letter queue, and the live one's work is done
            assert broker.get_queue_message_counts(AGGREGATE_QUEUE) == (0, 0, 0)
            assert counts["dead_lettered_aggregates"] == 2
        finally:
            broker.close()
    assert Experiment.get_by_id(experiment_id).best_run_id == run_id
