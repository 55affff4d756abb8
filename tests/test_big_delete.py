"""Deleting big experiments and models (issue 24), on SQLite and PostgreSQL: the rows go in the
request, the folders are renamed into the trash in its transaction and removed in the
background, the images they linked are collected after them, and a crash's trash is dealt with
when the API starts."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

from service.core.db import insert_in_batches
from service.core.tables import ConfigStat, Experiment, Image, Run, RunEvent, RunPoint
from service.settings import Settings
from service.web.keys import SETTINGS
from tests.api_support import model_with_images, wait_for_removal

RUNS = 400  # 20 x 20: hundreds, each with a folder


def settings_of(client) -> Settings:
    return client.server.app[SETTINGS]


async def experiment_with_folders(client, model_id: int) -> tuple[int, list[int]]:
    """A created experiment of RUNS runs, each with a folder as a finished run leaves it (a
    log, and a hard link to one of the model's images, as a reused run's folder holds), a
    state change and a curve point; its id and its runs' ids."""
    created = await client.post(f"/api/v1/models/{model_id}/experiments", json={
        "grid": {"i": [round(0.01 * n, 2) for n in range(1, 21)], "j": list(range(1, 21)),
                 "k": [1]}, "start": False})
    assert created.status == 201, await created.text()
    experiment_id = (await created.json())["id"]
    settings = settings_of(client)
    image = next(settings.images_dir.rglob("*.png"))
    run_ids = [run.id for run in Run.select(Run.id).where(Run.experiment == experiment_id)]
    for run_id in run_ids:
        folder = settings.runs_dir / str(run_id)
        folder.mkdir()
        (folder / "log.txt").write_text(f"run {run_id}\n")
        os.link(image, folder / image.name)
    insert_in_batches(RunEvent, [{"run": run_id, "experiment": experiment_id,
                                  "from_status": "queued", "to_status": "queued",
                                  "actor": "test"} for run_id in run_ids])
    insert_in_batches(RunPoint, [{"run": run_id, "step": 1, "value": 0.5} for run_id in run_ids])
    return experiment_id, run_ids


def rows_of(experiment_ids: list[int], run_ids: list[int]) -> list[int]:
    return [Experiment.select().where(Experiment.id.in_(experiment_ids)).count(),
            Run.select().where(Run.id.in_(run_ids)).count(),
            RunEvent.select().where(RunEvent.run.in_(run_ids)).count(),
            RunPoint.select().where(RunPoint.run.in_(run_ids)).count(),
            ConfigStat.select().where(ConfigStat.experiment.in_(experiment_ids)).count()]


def folders_in_place(settings: Settings, run_ids: list[int]) -> list[int]:
    return [run_id for run_id in run_ids if (settings.runs_dir / str(run_id)).exists()]


async def test_deleting_a_model_removes_every_row_then_every_folder_and_image(any_client):
    # Given a model with two experiments of 400 runs, each run with a folder
    settings = settings_of(any_client)
    model_id = await model_with_images(any_client)
    first, first_runs = await experiment_with_folders(any_client, model_id)
    second, second_runs = await experiment_with_folders(any_client, model_id)
    runs = first_runs + second_runs
    # When the model is deleted
    response = await any_client.delete(f"/api/v1/models/{model_id}")
    # Then it answers as before, and every row is gone; no run folder is where it was
    assert response.status == 204, await response.text()
    assert (await any_client.get(f"/api/v1/models/{model_id}")).status == 404
    assert rows_of([first, second], runs) == [0, 0, 0, 0, 0]
    assert folders_in_place(settings, runs) == []
    # And once the background removal ended, nothing is left on disk: no folder, no
    # snapshot, no image (their last links went with the folders)
    await wait_for_removal(settings.data_dir)
    assert list(settings.runs_dir.iterdir()) == []
    assert list(settings.snapshots_dir.iterdir()) == []
    assert [path for path in settings.images_dir.rglob("*") if path.is_file()] == []
    assert Image.select().count() == 0


async def test_deleting_an_experiment_keeps_the_others_and_the_images_in_use(any_client):
    # Given a model with two experiments of 400 runs with folders
    settings = settings_of(any_client)
    model_id = await model_with_images(any_client)
    gone, gone_runs = await experiment_with_folders(any_client, model_id)
    kept, kept_runs = await experiment_with_folders(any_client, model_id)
    # When one is deleted
    response = await any_client.delete(f"/api/v1/experiments/{gone}")
    assert response.status == 204, await response.text()
    # Then its rows and, after the removal, its folders and snapshot are gone; the other
    # experiment keeps all of its own, and the model's images stay
    assert rows_of([gone], gone_runs) == [0, 0, 0, 0, 0]
    await wait_for_removal(settings.data_dir)
    assert folders_in_place(settings, gone_runs) == []
    assert not (settings.snapshots_dir / str(gone)).exists()
    assert rows_of([kept], kept_runs)[:4] == [1, RUNS, RUNS, RUNS]
    assert folders_in_place(settings, kept_runs) == kept_runs
    assert sorted(path.name for path in settings.snapshots_dir.iterdir()) == [str(kept)]
    assert Image.select().count() == 6
    assert (await any_client.delete(f"/api/v1/experiments/{gone}")).status == 404


async def test_requests_during_a_deletion_and_its_removal_get_no_500(any_client, monkeypatch):
    # Given two models with experiments of 400 runs with folders, and a removal that waits
    # until released (so that the requests below surely meet it)
    import service.sweeps.removal as removal

    settings = settings_of(any_client)
    doomed = await model_with_images(any_client, "doomed")
    await experiment_with_folders(any_client, doomed)
    other = await model_with_images(any_client, "other")
    other_experiment, other_runs = await experiment_with_folders(any_client, other)
    release, remove_gone = threading.Event(), removal.remove_gone

    def held(top: Path) -> None:
        release.wait(timeout=60)
        remove_gone(top)

    monkeypatch.setattr(removal, "remove_gone", held)
    # When the model is deleted while other requests come in, and more while its folders wait
    # for their removal, then after it
    def requests() -> list:
        return [any_client.get("/api/v1/models"),
                any_client.get(f"/api/v1/models/{doomed}/experiments"),
                any_client.get(f"/api/v1/experiments/{other_experiment}"),
                any_client.get(f"/api/v1/experiments/{other_experiment}/runs?limit=1000"),
                any_client.post(f"/api/v1/models/{other}/experiments",
                                json={"grid": {"i": [0.1], "j": [1], "k": [1]}, "start": False})]

    during = await asyncio.gather(any_client.delete(f"/api/v1/models/{doomed}"), *requests())
    waiting = await asyncio.gather(*requests())
    release.set()
    after = await asyncio.gather(*requests())
    # Then no answer is a 5xx, and the deletion answered as before
    statuses = [response.status for response in (*during, *waiting, *after)]
    assert all(status < 500 for status in statuses), statuses
    assert during[0].status == 204
    await wait_for_removal(settings.data_dir)
    assert folders_in_place(settings, other_runs) == other_runs
    assert rows_of([other_experiment], other_runs)[:2] == [1, RUNS]


async def test_a_failed_deletion_puts_every_folder_back(any_client, monkeypatch):
    # Given an experiment of 400 runs with folders, and a disk that fails once the runs'
    # folders were moved into the trash, before the transaction commits
    import service.sweeps.removal as removal

    settings = settings_of(any_client)
    model_id = await model_with_images(any_client)
    experiment_id, run_ids = await experiment_with_folders(any_client, model_id)
    move = removal.move_into_trash

    def failing(top: Path, names, batch: str) -> None:
        move(top, names, batch)
        if top == settings.runs_dir:
            raise OSError("the disk failed")

    monkeypatch.setattr(removal, "move_into_trash", failing)
    # When the experiment is deleted
    response = await any_client.delete(f"/api/v1/experiments/{experiment_id}")
    # Then the fault is answered, and every row and folder is still there; no trash is left
    assert response.status == 500
    assert rows_of([experiment_id], run_ids)[:4] == [1, RUNS, RUNS, RUNS]
    assert folders_in_place(settings, run_ids) == run_ids
    assert (settings.snapshots_dir / str(experiment_id)).is_dir()
    await wait_for_removal(settings.data_dir)


async def test_a_crash_left_trash_is_dealt_with_when_the_api_starts(any_client, aiohttp_client,
                                                                   stub_broker):
    # Given what deletions cut off by a crash left: a batch whose transaction committed
    # (marked gone), and one whose transaction never ended (pending), holding the folders of
    # runs and a snapshot that still exist and of a run that does not
    from service.app import create_app

    settings = settings_of(any_client)
    model_id = await model_with_images(any_client)
    experiment_id, run_ids = await experiment_with_folders(any_client, model_id)
    gone = settings.runs_dir / ".trash" / "gone-1"
    (gone / "999999").mkdir(parents=True)
    (gone / "999999" / "log.txt").write_text("a deleted run's log")
    pending = settings.runs_dir / ".trash" / "pending-2"
    pending.mkdir()
    for run_id in run_ids[:50]:
        os.rename(settings.runs_dir / str(run_id), pending / str(run_id))
    (pending / "888888").mkdir()
    snapshots_pending = settings.snapshots_dir / ".trash" / "pending-2"
    snapshots_pending.mkdir(parents=True)
    os.rename(settings.snapshots_dir / str(experiment_id), snapshots_pending / str(experiment_id))
    # When the API starts
    await aiohttp_client(create_app(settings, broker=stub_broker))
    # Then the folders whose rows exist are back in place, and the rest is removed
    await wait_for_removal(settings.data_dir)
    assert folders_in_place(settings, run_ids) == run_ids
    assert (settings.snapshots_dir / str(experiment_id) / "1").is_dir()
    assert sorted(path.name for path in settings.runs_dir.iterdir()) == sorted(map(str, run_ids))


async def test_deleting_while_an_experiment_runs_is_still_a_409(any_client):
    # Given a model whose experiment of 400 runs with folders runs
    settings = settings_of(any_client)
    model_id = await model_with_images(any_client)
    experiment_id, run_ids = await experiment_with_folders(any_client, model_id)
    assert (await any_client.post(f"/api/v1/experiments/{experiment_id}/start")).status == 202
    # When it, or its model, is deleted
    for path in (f"/api/v1/experiments/{experiment_id}", f"/api/v1/models/{model_id}"):
        response = await any_client.delete(path)
        # Then the answer is a 409, and nothing was touched
        assert response.status == 409, await response.text()
    assert rows_of([experiment_id], run_ids)[:4] == [1, RUNS, RUNS, RUNS]
    assert folders_in_place(settings, run_ids) == run_ids
    assert not (settings.runs_dir / ".trash").exists()
