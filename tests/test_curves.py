"""Learning curves: the step lines a script prints, parsed, stored as they arrive, served."""

from __future__ import annotations

import asyncio

import pytest

from service.runs.curves import points_in
from tests.api_support import SMALL, make_model, upload_two_labels, wait_for_status


@pytest.mark.parametrize("line, point", [
    ("{'step': 200, 'accuracy': 0.61}", (200, 0.61)),
    ('{"epoch": 3, "accuracy": "61%"}', (3, 0.61)),
    ("iteration=40 loss=0.3 accuracy=0.7", (40, 0.7)),
    ("Step: 7, Accuracy = 0.5", (7, 0.5)),
])
def test_step_lines_are_points(line, point):
    assert points_in(line, "accuracy") == [point]


@pytest.mark.parametrize("line", [
    "{'i': '0.1', 'accuracy': 0.9}",  # the result line: no step
    "epoch 1/3 loss=2.31",  # no metric, and no step=… either
    "{'step': 2.5, 'accuracy': 0.3}",  # not a whole step
    "mystep=4 accuracy=0.2",  # another key that merely ends in step
])
def test_other_lines_are_not(line):
    assert points_in(line, "accuracy") == []


def test_a_step_printed_twice_keeps_its_last_value():
    assert points_in("step=1 loss=3\nstep=1 loss=2\nstep=2 loss=1", "loss") == [(1, 2.0),
                                                                               (2, 1.0)]


async def test_points_arrive_while_the_run_runs_and_all_are_kept(client, db, stub_worker,
                                                                 monkeypatch):
    # Given a script printing a point every 0.8 s
    monkeypatch.setenv("FAKE_TRAIN_MODE", "curve")
    monkeypatch.setenv("FAKE_TRAIN_SLEEP", "0.8")
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    created = await client.post(f"/api/v1/models/{model_id}/experiments", json={"grid": SMALL})
    experiment = await created.json()
    run_id = experiment["runs"][0]["id"]
    # Then some points are served while it is still running
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        curve = await (await client.get(f"/api/v1/runs/{run_id}/metrics")).json()
        run = await (await client.get(f"/api/v1/runs/{run_id}")).json()
        if curve["points"] and run["status"] == "running":
            break
        assert run["status"] in ("queued", "running"), run
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)
    # And once it ended, every point, in step order
    await wait_for_status(client, experiment["id"], {"completed"})
    curve = await (await client.get(f"/api/v1/runs/{run_id}/metrics")).json()
    assert curve["metric"] == "accuracy"
    assert curve["points"] == [{"step": s, "value": s / 1000} for s in range(100, 600, 100)]


async def test_an_unknown_run_has_no_curve(client, db):
    assert (await client.get("/api/v1/runs/999/metrics")).status == 404
