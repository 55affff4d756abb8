"""What a new user found in the new sweeps (issue 19), through the API and the stub worker:
no configuration and seed trained twice in one experiment, the run limit counts runs, reuse
follows the start, reused runs outlive their original, and creation is whole or nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from service.core.tables import Experiment, Run
from tests.api_support import model_with_images, wait_for_removal, wait_for_status

SMALL = {"i": [0.01], "j": [1], "k": [100, 200]}


async def _create(client, model_id: int, body: dict):
    return await client.post(f"/api/v1/models/{model_id}/experiments", json=body)


def _config_and_seed(run: dict) -> tuple:
    return (run["params"]["i"], run["params"]["j"], run["params"]["k"], run["seed"])


async def test_a_random_search_asking_more_than_its_space_holds_is_refused(client, db):
    model_id = await model_with_images(client)
    response = await _create(client, model_id, {
        "search": {"strategy": "random", "runs": 6, "seed": 5}, "grid": SMALL, "start": False})
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["field"] == "search.runs"
    assert "holds only 2 configurations" in error["message"]
    assert Experiment.select().count() == 0


async def test_a_random_search_draws_each_configuration_once(client, db):
    model_id = await model_with_images(client)
    grid = {"i": [0.001, 0.01, 0.1], "j": [1, 2], "k": {"low": 1, "high": 2}}
    response = await _create(client, model_id, {
        "search": {"strategy": "random", "runs": 12, "seed": 3}, "grid": grid, "start": False})
    assert response.status == 201, await response.text()
    runs = (await response.json())["runs"]
    assert len({_config_and_seed(run) for run in runs}) == 12  # the whole space, once each


async def test_a_configuration_tpe_asks_for_again_trains_the_next_seeds(client, db,
                                                                        stub_worker):
    # Given a TPE search of 6 trials over a space of 2 configurations, 2 seeds each
    model_id = await model_with_images(client)
    response = await _create(client, model_id, {
        "search": {"strategy": "tpe", "runs": 6, "parallel": 1, "seed": 1}, "grid": SMALL,
        "repeats": 2})
    assert response.status == 201, await response.text()
    done = await wait_for_status(client, (await response.json())["id"], {"completed"})
    # Then no configuration and seed ran twice: a configuration asked for again got new seeds
    keys = [_config_and_seed(run) for run in done["runs"]]
    assert len(keys) == 12 and len(set(keys)) == 12
    per_config = {}
    for i, j, k, seed in keys:
        per_config.setdefault((i, j, k), []).append(seed)
    assert sorted(seed for seeds in per_config.values() for seed in seeds) == sorted(
        seed for seeds in per_config.values() for seed in range(len(seeds)))


async def test_the_run_limit_counts_seeds_too(aiohttp_client, db, settings, stub_broker):
    from service.app import create_app

    limited = replace(settings, max_grid_points=20)
    client = await aiohttp_client(create_app(limited, broker=stub_broker))
    model_id = await model_with_images(client)
    response = await _create(client, model_id, {
        "search": {"strategy": "random", "runs": 8, "seed": 1}, "repeats": 3, "start": False})
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["field"] == "repeats"
    assert "would make 24 runs (8 configurations x 3 seeds)" in error["message"]
    assert "at most 20 runs" in error["message"]
    grid = await _create(client, model_id, {"grid": {"i": [0.1, 0.2], "j": [1, 2], "k": [1]},
                                            "repeats": 6, "start": False})
    assert grid.status == 422 and "would make 24 runs" in (await grid.json())["error"]["message"]


async def test_reuse_and_the_best_follow_the_start(client, db, stub_worker):
    # Given a finished experiment
    model_id = await model_with_images(client)
    first = await _create(client, model_id, {"grid": SMALL})
    await wait_for_status(client, (await first.json())["id"], {"completed"})
    # When the same one is created without starting it
    created = await (await _create(client, model_id, {"grid": SMALL, "start": False})).json()
    # Then it holds queued runs only, and no best
    assert created["status"] == "created" and created["best"] is None
    assert {run["status"] for run in created["runs"]} == {"queued"}
    # And once started, its runs take the known results, with times after its start
    started = await client.post(f"/api/v1/experiments/{created['id']}/start")
    assert started.status == 202
    done = await wait_for_status(client, created["id"], {"completed"})
    assert all(run["reused_from"] is not None for run in done["runs"])
    assert done["best"] is not None
    assert done["started_at"] <= done["finished_at"]
    assert all(done["started_at"] <= run["started_at"] for run in done["runs"])


async def test_a_reused_run_outlives_its_original_and_lends_its_own_curve(client, db,
                                                                          stub_worker,
                                                                          monkeypatch):
    # Given a result with a learning curve, reused by a second model with the same images
    monkeypatch.setenv("FAKE_TRAIN_MODE", "curve")
    original_model = await model_with_images(client, "original")
    first = await _create(client, original_model, {"grid": SMALL})
    await wait_for_status(client, (await first.json())["id"], {"completed"})
    heir_model = await model_with_images(client, "heir")
    second = await (await _create(client, heir_model, {"grid": SMALL})).json()
    reused = await wait_for_status(client, second["id"], {"completed"})
    # When the original's model is deleted
    assert (await client.delete(f"/api/v1/models/{original_model}")).status == 204
    # Then the reused runs say their original is gone, and keep their curves
    after = await (await client.get(f"/api/v1/experiments/{second['id']}")).json()
    assert all(run["reused_from_deleted"] for run in after["runs"])
    for run in after["runs"]:
        metrics = await (await client.get(f"/api/v1/runs/{run['id']}/metrics")).json()
        assert len(metrics["points"]) == 5
    # And reusing again names the run that still holds the result, and copies its curve
    third = await (await _create(client, heir_model, {"grid": SMALL})).json()
    again = await wait_for_status(client, third["id"], {"completed"})
    holders = {_config_and_seed(run): run["id"] for run in reused["runs"]}
    for run in again["runs"]:
        assert run["reused_from"] == holders[_config_and_seed(run)]
        assert run["reused_from_deleted"] is False
        metrics = await (await client.get(f"/api/v1/runs/{run['id']}/metrics")).json()
        assert len(metrics["points"]) == 5


async def test_an_experiment_whose_snapshot_fails_leaves_nothing(client, db, settings):
    # Given a model whose image file vanished from the store behind the database's back
    model_id = await model_with_images(client)
    victim = next(settings.images_dir.rglob("*.png"))
    victim.unlink()
    # When an experiment is created
    response = await _create(client, model_id, {"grid": SMALL, "start": False})
    # Then the answer says why, and no experiment, run or snapshot folder was left
    assert response.status == 409
    assert victim.stem in (await response.json())["error"]["message"]
    assert (Experiment.select().count(), Run.select().count()) == (0, 0)
    assert list(settings.snapshots_dir.iterdir()) == []


@pytest.mark.parametrize("objective", [{"metric": "loss"}, {"metric": "f1"}])
async def test_an_objective_other_than_accuracy_needs_its_direction(client, db, objective):
    model_id = await model_with_images(client)
    response = await _create(client, model_id, {"objective": objective, "start": False})
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["field"] == "objective.direction"
    assert objective["metric"] in error["message"]


async def test_accuracy_still_maximises_by_default(client, db):
    model_id = await model_with_images(client)
    response = await _create(client, model_id, {"objective": {"metric": "accuracy"},
                                                "start": False})
    assert response.status == 201
    assert (await response.json())["objective"] == {"metric": "accuracy",
                                                     "direction": "maximize"}


async def test_the_best_names_the_objective_it_is_best_by(client, db, stub_worker,
                                                          monkeypatch):
    # Given a model whose newest experiment minimises a loss
    monkeypatch.setenv("FAKE_TRAIN_MODE", "loss")
    model_id = await model_with_images(client)
    created = await (await _create(client, model_id, {
        "grid": SMALL, "objective": {"metric": "loss", "direction": "minimize"}})).json()
    done = await wait_for_status(client, created["id"], {"completed"})
    # Then the experiment's, the model's and the best route's best all say which objective
    model = await (await client.get(f"/api/v1/models/{model_id}")).json()
    best = await (await client.get(f"/api/v1/models/{model_id}/best")).json()
    for shown in (done["best"], model["best"], best):
        assert (shown["metric"], shown["direction"]) == ("loss", "minimize")
        assert shown["experiment_id"] == created["id"]


async def test_an_experiment_is_deleted_unless_it_runs(client, db, settings, stub_worker):
    # Given a finished experiment that holds the model's best, and one never started
    model_id = await model_with_images(client)
    done = await (await _create(client, model_id, {"grid": SMALL})).json()
    done = await wait_for_status(client, done["id"], {"completed"})
    waiting = await (await _create(client, model_id, {"grid": SMALL, "start": False})).json()
    # When both are deleted
    for experiment in (done, waiting):
        assert (await client.delete(f"/api/v1/experiments/{experiment['id']}")).status == 204
    # Then their runs, folders (once removed in the background) and snapshots are gone, and
    # the model has no best left
    assert (await client.get(f"/api/v1/experiments/{done['id']}")).status == 404
    assert Run.select().count() == 0
    await wait_for_removal(settings.data_dir)
    assert list(settings.snapshots_dir.iterdir()) == []
    assert list(settings.runs_dir.iterdir()) == []
    model = await (await client.get(f"/api/v1/models/{model_id}")).json()
    assert model["best"] is None and model["experiment_count"] == 0


async def test_a_running_experiment_is_not_deleted(client, db, monkeypatch, stub_worker):
    monkeypatch.setenv("FAKE_TRAIN_MODE", "hang")
    model_id = await model_with_images(client)
    running = await (await _create(client, model_id, {"grid": SMALL, "timeout_s": 30})).json()
    response = await client.delete(f"/api/v1/experiments/{running['id']}")
    assert response.status == 409
    assert "cancel it first" in (await response.json())["error"]["message"]
    assert (await client.post(f"/api/v1/experiments/{running['id']}/cancel")).status == 202
    assert (await client.delete(f"/api/v1/experiments/{running['id']}")).status == 204


async def test_an_image_deleted_from_a_model_stays_in_earlier_snapshots(client, db, settings):
    # Given an experiment made with the model's six images
    model_id = await model_with_images(client)
    before = await (await _create(client, model_id, {"grid": SMALL, "start": False})).json()
    snapshot = settings.snapshots_dir / str(before["id"])
    victim = next(snapshot.rglob("*.png"))
    sha = victim.stem
    # When one image is deleted from the model
    response = await client.delete(f"/api/v1/models/{model_id}/images/{sha}")
    assert response.status == 204
    # Then the model has five, a new experiment sees five, the old snapshot keeps six, and
    # the store keeps the file the old snapshot links (a remote worker fetches it from there)
    model = await (await client.get(f"/api/v1/models/{model_id}")).json()
    assert model["image_count"] == 5
    after = await (await _create(client, model_id, {"grid": SMALL, "start": False})).json()
    assert after["image_count"] == 5
    assert len(list(snapshot.rglob("*.png"))) == 6
    assert len(list(settings.images_dir.rglob(f"{sha}.*"))) == 1
    # And deleting it again is a 404; once the old experiment goes, so does the file
    assert (await client.delete(f"/api/v1/models/{model_id}/images/{sha}")).status == 404
    assert (await client.delete(f"/api/v1/experiments/{before['id']}")).status == 204
    await wait_for_removal(settings.data_dir)  # the snapshot's link held it until then
    assert list(settings.images_dir.rglob(f"{sha}.*")) == []


async def test_an_image_collected_while_it_is_uploaded_again_is_stored_again(client, db,
                                                                             settings,
                                                                             monkeypatch):
    # Given an upload whose stored files vanish between storing them and recording their
    # rows, as when another model's deletion collects the same bytes at that moment
    import service.ingest.uploads as uploads

    real_record = uploads._record_rows

    def collected_meanwhile(model_id, candidates):
        for path in settings.images_dir.rglob("*.png"):
            path.unlink()
        return real_record(model_id, candidates)

    monkeypatch.setattr(uploads, "_record_rows", collected_meanwhile)
    # When the upload ends
    model_id = await model_with_images(client)
    # Then every image the model has is in the store, and an experiment can be made of them
    assert len(list(settings.images_dir.rglob("*.png"))) == 6
    created = await _create(client, model_id, {"grid": SMALL, "start": False})
    assert created.status == 201, await created.text()
