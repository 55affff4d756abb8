"""The HTTP API through aiohttp's test client, with the Dramatiq stub broker and a real worker
thread running the fake training script."""

import asyncio
import functools
import uuid

import aiohttp
import pytest

from service.core.tables import RunEvent
from service.dispatch.broker import TRAIN_QUEUE
from tests.api_support import (
    image_form,
    make_model,
    sweep_to_end,
    upload_two_labels,
    wait_for_status,
    wait_until,
)
from tests.helpers import png_bytes, zip_bytes


async def test_models_create_list_show_and_errors(client, db):
    model_id = await make_model(client)
    listed = await (await client.get("/api/v1/models")).json()
    assert [m["name"] for m in listed["models"]] == ["digits"]
    shown = await (await client.get(f"/api/v1/models/{model_id}")).json()
    assert shown | {"created_at": None} == shown | {
        "id": model_id, "name": "digits", "image_count": 0, "labels": {}, "best": None,
        "created_at": None}
    duplicate = await client.post("/api/v1/models", json={"name": "digits"})
    assert duplicate.status == 409
    missing = await client.get("/api/v1/models/999")
    assert missing.status == 404
    assert (await missing.json())["error"] == {"code": "not_found",
                                               "message": "model 999 does not exist"}
    bad = await client.post("/api/v1/models", json={"name": ""})
    assert bad.status == 422 and (await bad.json())["error"]["field"] == "name"
    malformed = await client.post("/api/v1/models", data=b"{nope",
                                  headers={"Content-Type": "application/json"})
    assert malformed.status == 400


async def test_upload_archive_loose_files_duplicates_and_rejections(client, db, settings):
    model_id = await make_model(client)
    first = await upload_two_labels(client, model_id)
    assert (first["added"], first["duplicates"], first["labels"]) == (6, 0, {"1": 3, "2": 3})
    again = await upload_two_labels(client, model_id)
    assert (again["added"], again["duplicates"], again["image_count"]) == (0, 6, 6)
    form = image_form({"a.png": png_bytes(200), "notes.txt": b"not an image"}, label="7")
    mixed = await client.post(f"/api/v1/models/{model_id}/images", data=form)
    body = await mixed.json()
    assert mixed.status == 201
    assert (body["added"], body["labels"]["7"]) == (1, 1)
    assert body["rejected"] == [{"name": "notes.txt", "reason": "not an image Pillow can read"}]
    stored = list(settings.images_dir.rglob("*.png"))
    assert len(stored) == 7
    assert list(settings.tmp_dir.iterdir()) == []


async def test_upload_with_nothing_usable_keeps_nothing(client, db, settings):
    model_id = await make_model(client)
    response = await client.post(f"/api/v1/models/{model_id}/images",
                                 data=image_form({"x.txt": b"hello"}))
    assert response.status == 422
    assert (await response.json())["rejected"][0]["name"] == "x.txt"
    bad_label = await client.post(f"/api/v1/models/{model_id}/images",
                                  data=image_form({"a.png": png_bytes()}, label="../etc"))
    assert bad_label.status == 422
    assert (await bad_label.json())["error"]["field"] == "label"
    no_files = await client.post(f"/api/v1/models/{model_id}/images", data=image_form({}, "1"))
    assert no_files.status == 400
    shown = await (await client.get(f"/api/v1/models/{model_id}")).json()
    assert shown["image_count"] == 0
    assert list(settings.images_dir.rglob("*.png")) == []


async def test_upload_over_the_file_limit_is_413(aiohttp_client, tmp_path, stub_broker, db):
    from service.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "small", SWEEPLAB_MAX_FILE_BYTES="100")
    client = await aiohttp_client(create_app(settings, broker=stub_broker))
    model_id = await make_model(client)
    response = await client.post(f"/api/v1/models/{model_id}/images",
                                 data=image_form({"big.png": png_bytes(size=64) + b"\0" * 200}))
    assert response.status == 413
    assert list(settings.tmp_dir.iterdir()) == []


async def test_sweep_through_the_stub_worker_best_and_predict(client, db, stub_worker):
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    no_best = await client.get(f"/api/v1/models/{model_id}/best")
    assert no_best.status == 404
    early = await client.post(f"/api/v1/models/{model_id}/predict",
                              data=_predict_form())
    assert early.status == 409
    created = await client.post(f"/api/v1/models/{model_id}/experiments",
                                json={"grid": {"i": [0.1, 0.2], "j": [1, 4], "k": [5]}})
    assert created.status == 201
    experiment = await created.json()
    assert len(experiment["runs"]) == 4
    done = await wait_for_status(client, experiment["id"], {"completed"})
    accuracies = {run["id"]: run["accuracy"] for run in done["runs"]}
    assert done["counts"]["succeeded"] == 4
    best_id = max(accuracies, key=lambda run_id: (accuracies[run_id], -run_id))
    assert done["best"]["run_id"] == best_id
    assert done["best"]["accuracy"] == accuracies[best_id]
    model_best = await (await client.get(f"/api/v1/models/{model_id}/best")).json()
    assert model_best == done["best"]
    log = await client.get(f"/api/v1/runs/{best_id}/logs")
    assert "loading images from" in await log.text()
    predicted = await client.post(f"/api/v1/models/{model_id}/predict", data=_predict_form())
    assert predicted.status == 200, await predicted.text()
    body = await predicted.json()
    assert body["run_id"] == best_id and body["output"]["label"] == "7"
    assert body["params"] == done["best"]["params"]


def _predict_form():
    form = aiohttp.FormData()
    form.add_field("image", png_bytes(5), filename="x.png")
    return form


async def test_failing_runs_are_reported_and_the_best_comes_from_the_rest(
        client, db, stub_worker, monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_MODE", "fail_j4")
    done = await sweep_to_end(client, {"grid": {"i": [0.1], "j": [1, 4], "k": [5]}})
    failed = [run for run in done["runs"] if run["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["params"]["j"] == 4
    assert failed[0]["exit_code"] == 3
    assert failed[0]["error"].startswith("exited with code 3")
    assert "layers must be < 4" in failed[0]["error"]
    assert done["best"]["params"]["j"] == 1


async def test_no_accuracy_fails_every_run_and_the_experiment(client, db, stub_worker,
                                                              monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_MODE", "noacc")
    done = await sweep_to_end(client, {"grid": {"i": [0.1], "j": [1], "k": [5, 6]}}, ("failed",))
    assert {run["error"] for run in done["runs"]} == {"no accuracy found in the output"}
    assert done["best"] is None


async def test_timeout_kills_the_group_and_cancel_stops_runs(client, db, stub_broker,
                                                             stub_worker, monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_MODE", "hang")
    # this test's scripts (and their children) carry a mark of their own: other tests running
    # at the same time (pytest-xdist) hang scripts too
    mark = f"SWEEPLAB_TEST_MARK={uuid.uuid4().hex}"
    monkeypatch.setenv(*mark.split("=", 1))
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    created = await client.post(f"/api/v1/models/{model_id}/experiments",
                                json={"grid": {"i": [0.1], "j": [1], "k": [5]},
                                      "timeout_s": 1})
    done = await wait_for_status(client, (await created.json())["id"], {"failed"})
    assert done["runs"][0]["error"] == "timed out after 1 s"
    started = await client.post(f"/api/v1/models/{model_id}/experiments",
                                json={"grid": {"i": [0.1], "j": [1, 2], "k": [5]}})
    experiment_id = (await started.json())["id"]

    async def both_running() -> bool:
        body = await (await client.get(f"/api/v1/experiments/{experiment_id}")).json()
        return body["counts"]["running"] == 2

    await wait_until(both_running, 30, "both runs to start")
    cancelled = await client.post(f"/api/v1/experiments/{experiment_id}/cancel")
    assert cancelled.status == 202
    body = await cancelled.json()
    assert body["status"] == "cancelled"
    assert body["counts"]["cancelled"] == 2
    # The workers notice at their next heartbeat and stop their scripts; once both attempts
    # have ended, nothing may have been written
    await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(stub_broker.join, TRAIN_QUEUE, timeout=30_000))
    after = await (await client.get(f"/api/v1/experiments/{experiment_id}")).json()
    assert {run["status"] for run in after["runs"]} == {"cancelled"}
    assert RunEvent.select().where(RunEvent.to_status == "succeeded").count() == 0
    assert _processes_of_marker(mark) == []


def _processes_of_marker(mark: str) -> list[int]:
    """Live or zombie processes whose environment holds `mark` and a run's SWEEPLAB_RUN_ID."""
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark.encode() in environ and any(item.startswith(b"SWEEPLAB_RUN_ID=")
                                                for item in environ):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"grid": {"i": [0]}}, 422, "grid.i"),
        ({"grid": {"9q": [1]}}, 422, "grid"),
        ({"grid": {"q": 1}}, 422, "grid.q"),
        ({"timeout_s": -1}, 422, "timeout_s"),
        ({"timeout_s": 10**9}, 422, "timeout_s"),
        ({"start": "yes"}, 422, "start"),
    ],
)
async def test_experiment_validation(client, db, body, status, field):
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    response = await client.post(f"/api/v1/models/{model_id}/experiments", json=body)
    assert response.status == status
    assert (await response.json())["error"]["field"] == field


async def test_experiment_needs_images_and_start_false_waits(client, db, stub_broker):
    model_id = await make_model(client)
    empty = await client.post(f"/api/v1/models/{model_id}/experiments", json={})
    assert empty.status == 409
    await upload_two_labels(client, model_id)
    created = await client.post(f"/api/v1/models/{model_id}/experiments", json={"start": False})
    body = await created.json()
    assert (created.status, body["status"], body["counts"]["queued"]) == (201, "created", 27)
    assert stub_broker.queues["sweeplab_train"].qsize() == 0
    started = await client.post(f"/api/v1/experiments/{body['id']}/start")
    assert started.status == 202
    assert stub_broker.queues["sweeplab_train"].qsize() == 27
    again = await client.post(f"/api/v1/experiments/{body['id']}/start")
    assert again.status == 409
    listed = await (await client.get(f"/api/v1/models/{model_id}/experiments")).json()
    assert [e["id"] for e in listed["experiments"]] == [body["id"]]
    busy = await client.delete(f"/api/v1/models/{model_id}")
    assert busy.status == 409
    await client.post(f"/api/v1/experiments/{body['id']}/cancel")
    deleted = await client.delete(f"/api/v1/models/{model_id}")
    assert deleted.status == 204
    assert (await client.get(f"/api/v1/experiments/{body['id']}")).status == 404


async def test_token_guards_every_api_route_but_not_health(aiohttp_client, tmp_path,
                                                           stub_broker, db):
    from service.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "guarded", SWEEPLAB_API_TOKEN="s3cret")
    client = await aiohttp_client(create_app(settings, broker=stub_broker))
    assert (await client.get("/healthz")).status == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        refused = await client.get("/api/v1/models", headers=headers)
        assert refused.status == 401
        assert (await refused.json())["error"]["code"] == "unauthorized"
    allowed = await client.get("/api/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert allowed.status == 200
    assert "s3cret" not in repr(settings)


def test_refuses_a_public_address_without_a_token(tmp_path):
    import subprocess
    import sys

    env = {"SWEEPLAB_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "service", "--host", "0.0.0.0"], env=env,
                          capture_output=True, text=True, timeout=30,
                          cwd=__import__("pathlib").Path(__file__).parent.parent)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without SWEEPLAB_API_TOKEN" in done.stderr


async def test_broker_down_answers_503_and_queues_the_runs_once_it_is_back(aiohttp_client,
                                                                            tmp_path, db):
    from service.app import create_app
    from service.dispatch.publish import reconcile
    from tests.conftest import make_settings
    from tests.e2e_support import free_port

    down = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"
    settings = make_settings(tmp_path / "nobroker", SWEEPLAB_BROKER_URL=down)
    app = create_app(settings)
    client = await aiohttp_client(app)
    health = await client.get("/healthz")
    assert health.status == 503
    assert await health.json() == {"status": "unavailable", "database": "ok", "broker": "down"}
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    response = await client.post(f"/api/v1/models/{model_id}/experiments", json={})
    assert response.status == 503
    body = await response.json()
    assert "RabbitMQ is unreachable" in body["error"]["message"]
    assert "queued automatically when RabbitMQ is back" in body["error"]["message"]
    shown = await (await client.get(f"/api/v1/experiments/{body['experiment_id']}")).json()
    assert (shown["status"], shown["waiting_for_broker"], shown["counts"]["queued"]) == (
        "running", True, 27)
    # When the broker is back (here: a stub in its place), the reconciler sends the messages
    from dramatiq.brokers.stub import StubBroker

    back = StubBroker()
    back.declare_queue("sweeplab_train")
    assert reconcile(settings, back) == {"published": 27, "dead_lettered": 0,
                                         "dead_lettered_aggregates": 0, "settled": 0,
                                         "nudged": 0, "requeued": 0}
    assert back.queues["sweeplab_train"].qsize() == 27
    shown = await (await client.get(f"/api/v1/experiments/{body['experiment_id']}")).json()
    assert shown["waiting_for_broker"] is False


async def test_retry_queues_failed_runs_again_and_never_the_succeeded(client, db, stub_worker,
                                                                     monkeypatch):
    # Given a sweep where j = 4 failed
    monkeypatch.setenv("FAKE_TRAIN_MODE", "fail_j4")
    first = await sweep_to_end(client, {"grid": {"i": [0.1], "j": [1, 4], "k": [5, 6]}})
    succeeded_before = {r["id"]: r["accuracy"] for r in first["runs"] if r["status"] == "succeeded"}
    assert len(succeeded_before) == 2
    # When the script is fixed and the failed runs are retried, several times at once
    monkeypatch.setenv("FAKE_TRAIN_MODE", "ok")
    answers = await asyncio.gather(*(client.post(f"/api/v1/experiments/{first['id']}/retry")
                                     for _ in range(4)))
    assert sorted(a.status for a in answers) == [202, 409, 409, 409]
    done = await wait_for_status(client, first["id"], {"completed"})
    # Then every grid point has one run, all succeeded, the earlier successes untouched
    assert len(done["runs"]) == 4 and done["counts"]["succeeded"] == 4
    for run in done["runs"]:
        if run["id"] in succeeded_before:
            assert (run["accuracy"], run["attempts"]) == (succeeded_before[run["id"]], 1)
        else:
            assert run["attempts"] == 2 and run["error"] is None
    assert done["best"]["run_id"] == max(
        done["runs"], key=lambda r: (r["accuracy"], -r["id"]))["id"]
    nothing = await client.post(f"/api/v1/experiments/{first['id']}/retry")
    assert nothing.status == 409


async def test_the_token_never_reaches_the_scripts(client, db, stub_worker, monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_MODE", "env")
    monkeypatch.setenv("SWEEPLAB_API_TOKEN", "t0ken-that-must-not-leak")
    done = await sweep_to_end(client, {"grid": {"i": [0.1], "j": [1], "k": [5]}})
    log = await (await client.get(f"/api/v1/runs/{done['runs'][0]['id']}/logs")).text()
    assert "SWEEPLAB_RUN_ID=" in log
    assert "t0ken-that-must-not-leak" not in log


async def test_limits_refuse_the_whole_request_and_keep_nothing(aiohttp_client, tmp_path,
                                                                stub_broker, db):
    from service.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "limits", SWEEPLAB_MAX_ARCHIVE_BYTES="100000",
                             SWEEPLAB_MAX_IMAGES_PER_REQUEST="3")
    client = await aiohttp_client(create_app(settings, broker=stub_broker))
    model_id = await make_model(client)
    bomb = zip_bytes({"1/a.png": b"\0" * 60_000, "1/b.png": b"\0" * 60_000})
    form = image_form({"good.png": png_bytes(1), "bomb.zip": bomb}, label="1")
    refused = await client.post(f"/api/v1/models/{model_id}/images", data=form)
    assert refused.status == 413
    assert "zip bomb" in (await refused.json())["error"]["message"]
    many = image_form({f"{n}.png": png_bytes(n) for n in range(4)}, label="1")
    too_many = await client.post(f"/api/v1/models/{model_id}/images", data=many)
    assert too_many.status == 413
    shown = await (await client.get(f"/api/v1/models/{model_id}")).json()
    assert shown["image_count"] == 0
    assert list(settings.images_dir.rglob("*.*")) == []
    assert list(settings.tmp_dir.iterdir()) == []


async def test_hostile_archive_members_are_refused_and_the_rest_kept(client, db, settings):
    from tests.helpers import tar_gz_bytes

    model_id = await make_model(client)
    archive = tar_gz_bytes({"../../evil.png": png_bytes(1), "/abs.png": png_bytes(2),
                            "3/ok.png": png_bytes(3), "3/nested.tar.gz": b"x",
                            ".hidden/x.png": png_bytes(4)},
                           links={"3/link.png": "/etc/passwd"})
    response = await client.post(f"/api/v1/models/{model_id}/images",
                                 data=image_form({"hostile.tar.gz": archive}))
    body = await response.json()
    assert response.status == 201, body
    assert (body["added"], body["labels"]) == (1, {"3": 1})
    assert len(body["rejected"]) == 5
    assert not any(settings.data_dir.parent.rglob("evil.png"))
