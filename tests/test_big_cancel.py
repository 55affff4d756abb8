"""Cancelling a big experiment (issue 24): every queued run is cancelled at once, each with its
event, on SQLite and PostgreSQL; and on the real RabbitMQ, no message left in the queue starts
a run once the experiment is cancelled."""

from __future__ import annotations

import time

import pytest
from peewee import fn

from service.contract import ClaimOutcome
from service.core.db import database, open_database
from service.core.tables import Experiment, Run, RunEvent
from service.runs.state import claim_run
from tests.api_support import model_with_images
from tests.e2e_support import FAKE_SCRIPTS, small_dataset
from tests.helpers import wait_for

GRID_OF_1000 = {"i": [round(0.01 * n, 2) for n in range(1, 21)],
                "j": list(range(1, 11)), "k": list(range(1, 6))}


async def test_cancel_moves_every_queued_run_with_its_event(any_client, stub_broker):
    # Given a started experiment of 1,000 runs, two of them taken by a worker
    model_id = await model_with_images(any_client)
    created = await any_client.post(f"/api/v1/models/{model_id}/experiments",
                                    json={"grid": GRID_OF_1000})
    assert created.status == 201, await created.text()
    experiment_id = (await created.json())["id"]
    run_ids = [run.id for run in Run.select(Run.id).where(Run.experiment == experiment_id)
               .order_by(Run.id)]
    assert len(run_ids) == 1000
    taken = run_ids[:2]
    for run_id in taken:
        assert claim_run(run_id, "elsewhere:1", lease_s=30).outcome == ClaimOutcome.CLAIMED
    # When it is cancelled
    response = await any_client.post(f"/api/v1/experiments/{experiment_id}/cancel")
    body = await response.json()
    # Then every run is cancelled, the view says so, and each run has exactly one event
    # saying from which state it was cancelled, with its experiment
    assert response.status == 202, body
    assert body["status"] == "cancelled"
    assert body["counts"]["cancelled"] == 1000 and body["run_count"] == 1000
    statuses = {status for (status,) in Run.select(Run.status).where(
        Run.experiment == experiment_id).tuples()}
    assert statuses == {"cancelled"}
    events = list(RunEvent.select(RunEvent.run, RunEvent.experiment, RunEvent.from_status)
                  .where(RunEvent.to_status == "cancelled").tuples())
    assert sorted(run for run, _, _ in events) == run_ids
    assert {experiment for _, experiment, _ in events} == {experiment_id}
    assert {run for run, _, status in events if status == "running"} == set(taken)
    assert Experiment.get_by_id(experiment_id).finished_at is not None
    # And a message still on its way for any of them starts nothing
    assert {claim_run(run_id, "late:1", lease_s=30).outcome
            for run_id in run_ids} == {ClaimOutcome.DONE}


def _cancelled_at_and_starts_after(url: str, experiment_id: int) -> tuple[object, list[int]]:
    """When the experiment's last run was cancelled, and the runs started after that."""
    open_database(url)
    database.connect(reuse_if_open=True)
    try:
        ours = RunEvent.experiment == experiment_id
        cancelled_at = (RunEvent.select(fn.MAX(RunEvent.at))
                        .where(ours, RunEvent.to_status == "cancelled").scalar())
        started = [run_id for (run_id,) in RunEvent.select(RunEvent.run).where(
            ours, RunEvent.to_status == "running", RunEvent.at > cancelled_at).tuples()]
        return cancelled_at, started
    finally:
        database.close()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_no_message_left_in_the_queue_starts_a_run_after_cancel(make_stack, request, engine):
    # Given 600 short runs sent to the real RabbitMQ, on either database, a few of them done
    env = dict(FAKE_SCRIPTS)
    if engine == "postgresql":
        env["SWEEPLAB_DATABASE_URL"] = request.getfixturevalue("postgres_database")[0]
    stack = make_stack(threads=2, FAKE_TRAIN_SLEEP="0.05", **env)
    url = env.get("SWEEPLAB_DATABASE_URL", f"sqlite:///{stack.data_dir / 'sweeplab.db'}")
    model_id = small_dataset(stack)
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                    {"grid": {"i": [round(0.01 * n, 2) for n in range(1, 21)],
                                              "j": list(range(1, 11)), "k": [1, 2, 3]}})
    assert status == 201, created
    experiment_id = created["id"]

    def succeeded() -> int:
        return stack.get(f"/api/v1/experiments/{experiment_id}")[1]["counts"]["succeeded"]

    wait_for(lambda: succeeded() >= 5, 60, "a few runs to succeed")
    # When it is cancelled while hundreds of its messages wait in the queue and its runs'
    # results are being recorded
    status, cancelled = stack.request("POST", f"/api/v1/experiments/{experiment_id}/cancel")
    assert status == 202 and cancelled["status"] == "cancelled", cancelled
    # Then the workers take every message left (each claim finds its run ended)...
    wait_for(lambda: _queue_drained(stack), 120, "the queue to be drained", every_s=0.5)
    time.sleep(1)  # a message taken just as the queue emptied is claimed within this
    # ...and none of them started a run: no run went to running after the cancel
    cancelled_at, started = _cancelled_at_and_starts_after(url, experiment_id)
    assert cancelled_at is not None and started == []
    _, after = stack.get(f"/api/v1/experiments/{experiment_id}")
    assert after["status"] == "cancelled"
    counts = after["counts"]
    assert counts["queued"] == counts["running"] == 0
    assert counts["succeeded"] + counts["failed"] + counts["cancelled"] == 600
    assert counts["cancelled"] > 300, counts


def _queue_drained(stack) -> bool:
    from service.dispatch.broker import make_broker
    from service.dispatch.redelivery import train_queue_is_empty

    broker = make_broker(stack.env["SWEEPLAB_BROKER_URL"])
    try:
        return train_queue_is_empty(broker)
    finally:
        broker.close()
