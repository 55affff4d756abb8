"""Regression tests for what a new user found at the edges of the API: ids given twice, stale
messages, JSON bodies over one chunk, one rule for every JSON route, labels, and messages; and
the worker a run names."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile

import aiohttp
import pytest

from service.core.tables import Experiment, Run, RunEvent
from service.dispatch.broker import send_train
from tests.api_support import SMALL, image_form, make_model, upload_two_labels, wait_for_status
from tests.helpers import png_bytes


async def test_ids_are_never_given_twice_after_a_delete(client, db):
    # Given a model with a cancelled experiment, the newest rows of every table
    first = await make_model(client, "first")
    await upload_two_labels(client, first)
    created = await client.post(f"/api/v1/models/{first}/experiments",
                                json={"grid": SMALL, "start": False})
    old = await created.json()
    await client.post(f"/api/v1/experiments/{old['id']}/cancel")
    # When it is deleted and another model gets an experiment at once
    assert (await client.delete(f"/api/v1/models/{first}")).status == 204
    second = await make_model(client, "second")
    await upload_two_labels(client, second)
    created = await client.post(f"/api/v1/models/{second}/experiments",
                                json={"grid": SMALL, "start": False})
    new = await created.json()
    # Then none of the new ids is an old one
    assert second > first
    assert new["id"] > old["id"]
    assert new["runs"][0]["id"] > old["runs"][0]["id"]


async def test_a_stale_message_never_runs_a_run_whose_experiment_was_not_started(
        client, db, stub_broker, stub_worker):
    # Given an experiment created with start: false
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    created = await client.post(f"/api/v1/models/{model_id}/experiments",
                                json={"grid": SMALL, "start": False})
    experiment = await created.json()
    run_id = experiment["runs"][0]["id"]
    # When a leftover train message names its run
    send_train(stub_broker, run_id, 10)
    stub_broker.join("sweeplab_train")
    stub_worker.join()
    # Then the message is acknowledged and nothing is recorded
    run = Run.get_by_id(run_id)
    assert (run.status, run.attempts, run.started_at) == ("queued", 0, None)
    assert RunEvent.select().where(RunEvent.run == run_id).count() == 0
    assert Experiment.get_by_id(experiment["id"]).status == "created"
    assert stub_broker.dead_letters == []
    # And once started, it runs as usual, started before it finished
    await client.post(f"/api/v1/experiments/{experiment['id']}/start")
    done = await wait_for_status(client, experiment["id"], {"completed"})
    assert done["started_at"] <= done["finished_at"]


@pytest.mark.parametrize("padding", [300_000, 900_000])
async def test_json_bodies_over_many_chunks_are_read_whole(client, db, padding):
    # A description this long is refused by its own rule, which proves the JSON was read.
    body = json.dumps({"name": "big", "description": "x" * padding}).encode()
    for _ in range(5):
        response = await client.post("/api/v1/models", data=chunks(body),
                                     headers={"Content-Type": "application/json"})
        assert response.status == 422, await response.text()
        assert (await response.json())["error"]["field"] == "description"


def chunks(data: bytes, size: int = 16_384):
    async def stream():
        for start in range(0, len(data), size):
            yield data[start:start + size]
    return stream()


async def test_json_bodies_past_the_limit_are_413_declared_or_chunked(client, db):
    body = json.dumps({"name": "x" * (1 << 20)}).encode()
    declared = await client.post("/api/v1/models", data=body,
                                 headers={"Content-Type": "application/json"})
    chunked = await client.post("/api/v1/models", data=chunks(body),
                                headers={"Content-Type": "application/json"})
    for response in (declared, chunked):
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "too_large"


@pytest.mark.parametrize("path", ["/api/v1/models", "/api/v1/models/{id}/experiments"])
async def test_every_json_route_has_one_rule(client, db, path):
    model_id = await make_model(client)
    url = path.format(id=model_id)
    as_text = await client.post(url, data='{"name": "t"}',
                                headers={"Content-Type": "text/plain"})
    assert as_text.status == 415
    assert "application/json" in (await as_text.json())["error"]["message"]
    unknown = await client.post(url, json={"name": "u", "colour": "red"})
    assert unknown.status == 422
    error = (await unknown.json())["error"]
    assert error["field"] == "colour" and "colour" in error["message"]


async def test_405_names_the_allowed_methods(client, db):
    response = await client.put("/api/v1/models")
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}
    assert (await response.json())["error"]["code"] == "method_not_allowed"


async def test_ids_are_ascii_digits_only(client, db):
    model_id = await make_model(client)
    arabic = "".join(chr(0x0660 + int(digit)) for digit in str(model_id))
    response = await client.get(f"/api/v1/models/{arabic}")
    assert response.status == 404
    assert (await client.get(f"/api/v1/models/{model_id}")).status == 200


@pytest.mark.parametrize("name", ["a\u0000x", "two\nlines", "tab\there", "esc\u001b[31m",
                                  "del\u007f", "c1\u0085"])
async def test_model_names_refuse_control_characters(client, db, name):
    response = await client.post("/api/v1/models", json={"name": name})
    assert response.status == 422
    assert (await response.json())["error"]["field"] == "name"


async def test_a_label_conflict_is_said_and_the_first_label_stays(client, db):
    model_id = await make_model(client)
    image = png_bytes(77)
    first = await client.post(f"/api/v1/models/{model_id}/images",
                              data=image_form({"a.png": image}, label="3"))
    assert (await first.json())["label_conflicts"] == []
    again = await client.post(f"/api/v1/models/{model_id}/images",
                              data=image_form({"b.png": image}, label="8"))
    body = await again.json()
    assert (again.status, body["duplicates"]) == (201, 1)
    assert [(c["name"], c["label"], c["kept_label"]) for c in body["label_conflicts"]] == [
        ("b.png", "8", "3")]
    assert body["labels"] == {"3": 1}


async def test_each_label_field_labels_the_files_after_it(client, db):
    model_id = await make_model(client)
    form = aiohttp.FormData()
    form.add_field("images", png_bytes(1), filename="none.png")
    form.add_field("label", "cat")
    form.add_field("images", png_bytes(2), filename="cat1.png")
    form.add_field("images", png_bytes(3), filename="cat2.png")
    form.add_field("label", "dog")
    form.add_field("images", png_bytes(4), filename="dog.png")
    form.add_field("images", png_bytes(2), filename="cat1-again.png")
    response = await client.post(f"/api/v1/models/{model_id}/images", data=form)
    body = await response.json()
    assert response.status == 201, body
    assert (body["added"], body["image_count"], body["labels"]) == (4, 4, {"cat": 2, "dog": 1})
    assert [(c["name"], c["kept_label"]) for c in body["label_conflicts"]] == [
        ("cat1-again.png", "cat")]


async def test_a_label_after_the_last_file_is_refused_not_ignored(client, db):
    model_id = await make_model(client)
    form = aiohttp.FormData()
    form.add_field("images", png_bytes(1), filename="a.png")
    form.add_field("label", "cat")
    response = await client.post(f"/api/v1/models/{model_id}/images", data=form)
    error = (await response.json())["error"]
    assert (response.status, error["field"]) == (400, "label")
    assert "not followed by any file part" in error["message"]
    shown = await (await client.get(f"/api/v1/models/{model_id}")).json()
    assert shown["image_count"] == 0


async def test_upload_messages_say_what_to_send(client, db):
    model_id = await make_model(client)
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("images", "not a file part")
    nameless = await client.post(f"/api/v1/models/{model_id}/images", data=form)
    message = (await nameless.json())["error"]["message"]
    assert nameless.status == 400 and "has no filename" in message
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:bz2") as tar:
        info = tarfile.TarInfo("1/a.png")
        data = png_bytes(5)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    bz2 = await client.post(f"/api/v1/models/{model_id}/images",
                            data=image_form({"set.tar.bz2": archive.getvalue()}))
    rejected = (await bz2.json())["rejected"]
    assert bz2.status == 422
    assert "not accepted" in rejected[0]["reason"] and ".tar.gz" in rejected[0]["reason"]


async def test_predict_refuses_a_label_part_and_does_not_offer_one(client, db, stub_worker):
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    created = await client.post(f"/api/v1/models/{model_id}/experiments", json={"grid": SMALL})
    await wait_for_status(client, (await created.json())["id"], {"completed"})
    form = aiohttp.FormData()
    form.add_field("label", "3")
    form.add_field("image", png_bytes(9), filename="x.png")
    response = await client.post(f"/api/v1/models/{model_id}/predict", data=form)
    message = (await response.json())["error"]["message"]
    assert response.status == 400
    assert message == ("unexpected form field 'label'; expected file parts named 'image', "
                       "each with a filename")


async def test_a_retried_experiment_cancelled_before_it_started_has_started_at(
        client, db, stub_worker):
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    created = await client.post(f"/api/v1/models/{model_id}/experiments",
                                json={"grid": SMALL, "start": False})
    experiment_id = (await created.json())["id"]
    await client.post(f"/api/v1/experiments/{experiment_id}/cancel")
    assert (await client.post(f"/api/v1/experiments/{experiment_id}/retry")).status == 202
    done = await wait_for_status(client, experiment_id, {"completed"})
    assert done["started_at"] is not None and done["started_at"] <= done["finished_at"]


@pytest.mark.parametrize("content_type, body", [
    ("multipart/form-data", b"--x\r\n\r\n"),  # no boundary
    ("multipart/form-data; boundary=b0", b'--b0\r\nContent-Disposition: form-data; '
     b'name="\x08"\r\n\r\nx\r\n--b0--\r\n'),  # a control character in a part header
    ("multipart/form-data; boundary=b0", b'--b0\r\nContent-Disposition: form-data; '
     b'name="images"; filename="a.png"\r\nFalse--b0--'),  # headers that never end
    ("multipart/form-data; boundary=b0", b'--b0\r\nContent-Disposition: form-data; '
     b'name="images"; filename="a.png"\r\n\r\n\x89PNG'),  # cut off mid-part
])
async def test_a_malformed_multipart_body_is_400_not_500(client, db, content_type, body):
    model_id = await make_model(client)
    response = await client.post(f"/api/v1/models/{model_id}/images", data=body,
                                 headers={"Content-Type": content_type})
    assert response.status == 400, await response.text()
    assert "malformed" in (await response.json())["error"]["message"]
    shown = await (await client.get(f"/api/v1/models/{model_id}")).json()
    assert shown["image_count"] == 0


async def test_a_run_names_the_worker_that_claimed_it_and_none_before(client, db, stub_worker):
    # Given a model with images, an experiment waiting to start and one run to its end
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    grid = {"grid": SMALL}
    waiting = await (await client.post(f"/api/v1/models/{model_id}/experiments",
                                       json={**grid, "start": False})).json()
    created = await (await client.post(f"/api/v1/models/{model_id}/experiments",
                                       json=grid)).json()
    done = await wait_for_status(client, created["id"], {"completed"})
    # When each run is read
    queued = await (await client.get(f"/api/v1/runs/{waiting['runs'][0]['id']}")).json()
    ran = await (await client.get(f"/api/v1/runs/{done['runs'][0]['id']}")).json()
    # Then the run no worker claimed names none; the one the stub worker ran names this host
    # and process (its threads are this test's), in the experiment's view too
    assert (queued["status"], queued["worker"]) == ("queued", None)
    assert ran["worker"] == {"host": socket.gethostname(), "pid": os.getpid()}
    assert done["runs"][0]["worker"] == ran["worker"]

