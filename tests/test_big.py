"""Big sweeps (issue 24) through the API, on SQLite and PostgreSQL: the run limit's default,
the paged runs route and the experiment view of a large experiment."""

from __future__ import annotations

import errno
import itertools
import os
import random
from pathlib import Path

import pytest

from service.contract import Outcome, RunStatus
from service.core.db import database, write_transaction
from service.core.tables import ConfigStat, Experiment, Run
from service.runs.attempts import record_outcome
from service.runs.state import claim_run
from service.settings import DEFAULTS
from service.sweeps.aggregate import aggregate_experiment, recompute_statistics
from service.sweeps.experiments import mark_running, retry_experiment
from service.sweeps.grid import config_key
from service.web.keys import SETTINGS
from tests.api_support import model_with_images

STATUSES = ("succeeded", "succeeded", "succeeded", "failed", "queued", "running", "cancelled")


async def big_experiment(client, runs: int, seed: int = 7) -> tuple[int, dict[int, float | None]]:
    """An experiment of `runs` runs written as rows (statuses and values drawn at random,
    with ties), as a sweep of that size would leave it; its value of each run by id."""
    model_id = await model_with_images(client)
    created = await client.post(f"/api/v1/models/{model_id}/experiments",
                                json={"grid": {"i": [0.5], "j": [1], "k": [1]}, "start": False})
    assert created.status == 201, await created.text()
    experiment_id = (await created.json())["id"]
    draw = random.Random(seed)
    rows = []
    for n in range(2, runs + 1):
        params = {"i": 0.5, "j": n, "k": 1}
        status = draw.choice(STATUSES)
        value = round(draw.random(), 2) if status == "succeeded" else None
        rows.append({"experiment": experiment_id, "params": params,
                     "config": config_key(params), "status": status, "value": value})
    with database.atomic():
        for start in range(0, len(rows), 500):
            Run.insert_many(rows[start:start + 500]).execute()
    values = {run.id: run.value for run in Run.select().where(Run.experiment == experiment_id)}
    Experiment.update(status="running").where(Experiment.id == experiment_id).execute()
    with write_transaction():
        recompute_statistics(experiment_id)  # the repair path fills what results would have
    return experiment_id, values


async def all_pages(client, experiment_id: int, query: str) -> list[dict]:
    seen, after, pages = [], None, 0
    while True:
        cursor = f"&after={after}" if after else ""
        response = await client.get(f"/api/v1/experiments/{experiment_id}/runs?{query}{cursor}")
        assert response.status == 200, await response.text()
        page = await response.json()
        seen += page["runs"]
        pages += 1
        after = page["next"]
        if after is None:
            return seen
        assert pages < 100


async def test_the_run_limit_defaults_to_20000_and_bounds_a_search_too(client, db):
    assert DEFAULTS["SWEEPLAB_MAX_GRID_POINTS"][0] == "20000"
    model_id = await model_with_images(client)
    response = await client.post(f"/api/v1/models/{model_id}/experiments", json={
        "search": {"strategy": "random", "runs": 20001, "seed": 1},
        "grid": {"i": {"low": 0.001, "high": 1.0}}, "start": False})
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["field"] == "search.runs" and "20000" in error["message"]


async def test_paging_through_1200_runs_sees_every_run_once(any_client):
    experiment_id, values = await big_experiment(any_client, 1200)
    by_id = await all_pages(any_client, experiment_id, "limit=250")
    assert [run["id"] for run in by_id] == sorted(values)
    by_value = await all_pages(any_client, experiment_id, "limit=333&sort=value")
    assert sorted(run["id"] for run in by_value) == sorted(values)
    valued = [(run["value"], run["id"]) for run in by_value if run["value"] is not None]
    assert valued == sorted(valued, key=lambda pair: (-pair[0], pair[1]))  # best first
    assert all(run["value"] is None for run in by_value[len(valued):])  # then the rest
    failed = await all_pages(any_client, experiment_id, "limit=1000&status=failed&sort=value")
    assert {run["id"] for run in failed} == {
        run["id"] for run in by_id if run["status"] == "failed"}
    assert all(run["status"] == "failed" for run in failed)


async def test_the_view_of_a_large_experiment_inlines_its_best_and_recent_runs(any_client):
    experiment_id, values = await big_experiment(any_client, 1200)
    view = await (await any_client.get(f"/api/v1/experiments/{experiment_id}")).json()
    assert view["run_count"] == 1200 and view["runs_complete"] is False
    assert view["runs_url"] == f"/api/v1/experiments/{experiment_id}/runs"
    assert sum(view["counts"].values()) == 1200
    recent = sorted(values)[-100:]
    assert [run["id"] for run in view["runs"]] == sorted({*recent, view["best"]["run_id"]})
    assert view["configuration_count"] == sum(v is not None for v in values.values())
    assert len(view["configurations"]) == 100
    best = max((value, -run_id) for run_id, value in values.items() if value is not None)
    assert view["best"]["run_id"] == -best[1]
    means = [config["mean"] for config in view["configurations"]]
    assert means == sorted(means, reverse=True)


async def test_a_small_experiment_still_lists_every_run(client, db):
    experiment_id, values = await big_experiment(client, 27)
    view = await (await client.get(f"/api/v1/experiments/{experiment_id}")).json()
    assert view["runs_complete"] is True and view["run_count"] == 27
    assert [run["id"] for run in view["runs"]] == sorted(values)


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "status=done",
                                   "sort=accuracy", "after=bm9wZQ", "after=!!",
                                   "sort=value&after=WyJpZCIsIDVd"])
async def test_a_wrong_page_request_is_a_422_naming_the_field(client, db, query):
    experiment_id, _ = await big_experiment(client, 3)
    response = await client.get(f"/api/v1/experiments/{experiment_id}/runs?{query}")
    assert response.status == 422, await response.text()
    field = (await response.json())["error"]["field"]
    assert field == query.split("=")[0] if "after" not in query else field == "after"


def _kept_statistics(experiment_id: int) -> dict[str, tuple]:
    return {row.config: (row.n, pytest.approx(row.mean), pytest.approx(row.m2, abs=1e-9),
                         row.low, row.high, row.first_run_id, row.best_run_id, row.run_ids)
            for row in ConfigStat.select().where(ConfigStat.experiment == experiment_id)}


async def test_statistics_kept_with_each_result_equal_a_recompute(any_client):
    # Given 6 configurations x 3 seeds, ended in a random order: some fail, some results
    # arrive twice (a redelivered message), the failed ones are retried and succeed
    model_id = await model_with_images(any_client)
    created = await any_client.post(f"/api/v1/models/{model_id}/experiments", json={
        "grid": {"i": [0.1, 0.2, 0.3], "j": [1, 2], "k": [1]}, "repeats": 3, "start": False})
    experiment_id = (await created.json())["id"]
    mark_running(experiment_id)
    draw = random.Random(24)
    run_ids = [run.id for run in Run.select().where(Run.experiment == experiment_id)]

    def end(run_id: int, fail: bool) -> None:
        claim = claim_run(run_id, "test:1", 30)
        outcome = (Outcome(RunStatus.FAILED, error="boom") if fail else
                   Outcome(RunStatus.SUCCEEDED, value=round(draw.random(), 1)))
        for _ in range(draw.choice((1, 2))):  # a second copy must change nothing
            record_outcome(run_id, claim.attempt, "test:1", outcome)
        aggregate_experiment(experiment_id)

    for run_id in draw.sample(run_ids, len(run_ids)):
        end(run_id, fail=draw.random() < 0.3)
    retry_experiment(experiment_id, "test")
    for run_id in [run.id for run in Run.select().where(
            Run.experiment == experiment_id, Run.status == "queued")]:
        end(run_id, fail=False)
    kept = _kept_statistics(experiment_id)
    best = Experiment.get_by_id(experiment_id).best_run_id
    # When they are recomputed from the runs
    with write_transaction():
        recompute_statistics(experiment_id)
    # Then nothing changed, every success counted once, and the best is the same
    assert _kept_statistics(experiment_id) == kept
    assert sum(stat[0] for stat in kept.values()) == len(run_ids)
    assert Experiment.get_by_id(experiment_id).best_run_id == best is not None


# numbers, booleans and strings with what COPY's text format and JSON escape (backslashes,
# quotes, a non-ASCII letter): 4 x 2 x 4 x 40 = 1,280 configurations
ESCAPED_GRID = {"lr": [0.001, 1e-05, 0.5, 3], "deep": [True, False],
                "act": ["re\\lu", 'ta"nh', "sé", "x y"], "n": list(range(1, 41))}


async def test_a_large_grid_is_created_with_every_run_as_given(any_client):
    # Given a model, when a 1,280-point grid with 2 repeats is created
    model_id = await model_with_images(any_client)
    created = await any_client.post(f"/api/v1/models/{model_id}/experiments", json={
        "grid": ESCAPED_GRID, "repeats": 2, "start": False})
    assert created.status == 201, await created.text()
    experiment_id = (await created.json())["id"]
    # Then it holds one queued run per configuration and seed, each with its values exactly
    # as given, in the grid's order
    runs = await all_pages(any_client, experiment_id, "limit=1000")
    expected = [(dict(zip(ESCAPED_GRID, values, strict=True)), seed)
                for values in itertools.product(*ESCAPED_GRID.values()) for seed in (0, 1)]
    assert sorted(repr((run["params"], run["seed"])) for run in runs) == sorted(
        repr(pair) for pair in expected)  # a dict's repr keeps its keys' order
    assert {(run["status"], run["attempts"], run["trial"], run["reused_from_deleted"])
            for run in runs} == {("queued", 0, 0, False)}


async def test_a_creation_failing_after_its_runs_were_inserted_leaves_nothing(any_client,
                                                                             monkeypatch):
    # Given a disk that fails as the snapshot is renamed into place, the creation's last step
    model_id = await model_with_images(any_client)
    settings = any_client.server.app[SETTINGS]
    rename = os.rename

    def full_disk(source, target) -> None:
        if Path(target).parent == settings.snapshots_dir:
            raise OSError(errno.ENOSPC, "No space left on device")
        rename(source, target)

    monkeypatch.setattr("service.storage.os.rename", full_disk)
    # When a 1,280-point grid is created
    created = await any_client.post(f"/api/v1/models/{model_id}/experiments",
                                    json={"grid": ESCAPED_GRID, "start": False})
    # Then the fault is answered, and no experiment, run or snapshot is left
    assert created.status == 500, await created.text()
    listed = await (await any_client.get(f"/api/v1/models/{model_id}/experiments")).json()
    assert listed["experiments"] == [] and Run.select().count() == 0
    assert list(settings.snapshots_dir.iterdir()) == []


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
async def test_the_best_among_configurations_tied_at_the_best_mean_is_the_earliest(
        any_client, direction):
    # Given 40 configurations whose results arrive in a random order, 12 of them tied at the
    # best mean (as a discrete accuracy gives), the others worse
    model_id = await model_with_images(any_client)
    created = await any_client.post(f"/api/v1/models/{model_id}/experiments", json={
        "grid": {"i": [0.1, 0.2], "j": list(range(1, 21)), "k": [1]}, "start": False,
        "objective": {"metric": "loss", "direction": direction}})
    experiment_id = (await created.json())["id"]
    mark_running(experiment_id)
    run_ids = [run.id for run in Run.select().where(Run.experiment == experiment_id)]
    draw = random.Random(5)
    best_value, worse = (0.9, 0.5) if direction == "maximize" else (0.1, 0.5)
    tied = set(draw.sample(run_ids, 12))
    for run_id in draw.sample(run_ids, len(run_ids)):
        claim = claim_run(run_id, "test:1", 30)
        value = best_value if run_id in tied else worse
        record_outcome(run_id, claim.attempt, "test:1", Outcome(RunStatus.SUCCEEDED, value=value))
        aggregate_experiment(experiment_id)
    # Then the best is the tied configuration with the earliest first run, whichever arrived
    # first, and it stays so when the statistics are recomputed
    assert Experiment.get_by_id(experiment_id).best_run_id == min(tied)
    with write_transaction():
        recompute_statistics(experiment_id)
    assert Experiment.get_by_id(experiment_id).best_run_id == min(tied)
