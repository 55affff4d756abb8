"""Several images in one predict request, through the API and the page: answers in order,
bad parts and too many parts refused with nothing kept, a failing image named, scripts that do
not opt in to the serve protocol run cold as before, and our own train.py and test.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest

from scripts.make_sample_data import write_sample
from service.settings import Settings, ensure_data_dirs
from service.web.keys import WARM_POOL
from tests.api_support import (
    csrf_of,
    image_parts,
    predict,
    sweep_to_best,
    trained,
    write_fake_serve,
)
from tests.conftest import make_settings
from tests.e2e_support import ROOT
from tests.helpers import png_bytes


async def test_a_batch_is_answered_in_order_by_a_script_that_does_not_opt_in(
        client, db, stub_worker, settings):
    # Given a model whose test script is the assignment-style one (no serve protocol)
    model_id, best = await trained(client)
    # When one request sends three images
    status, body = await predict(client, model_id, png_bytes(1), png_bytes(2), png_bytes(3))
    # Then three answers come back in the order sent, each today's single answer
    assert status == 200, body
    assert list(body) == ["predictions"]
    images = [(p["name"], p["output"]["image"]) for p in body["predictions"]]
    assert images == [("digit-0.png", "digit-0.png"), ("digit-1.png", "digit-1.png"),
                      ("digit-2.png", "digit-2.png")]
    assert all(p["run_id"] == best and p["output"]["label"] == "7" and
               "model trained with" in p["stdout"] for p in body["predictions"])
    # And they ran cold: no warm process, nothing left in the temp space
    assert client.app[WARM_POOL].pids() == {}
    assert list(settings.tmp_dir.iterdir()) == []
    # And one image alone is answered exactly as before: the object, not a list
    status, single = await predict(client, model_id, png_bytes(4))
    assert status == 200 and set(single) == {"run_id", "params", "name", "output", "stdout",
                                             "duration_s"}


async def test_a_bad_part_refuses_the_batch_naming_it_and_keeps_nothing(client, db,
                                                                        stub_worker, settings):
    model_id, _ = await trained(client)
    form = aiohttp.FormData()
    form.add_field("image", png_bytes(1), filename="good.png")
    form.add_field("image", b"not a picture", filename="notes.txt")
    form.add_field("image", png_bytes(2), filename="fine.png")
    response = await client.post(f"/api/v1/models/{model_id}/predict", data=form)
    body = await response.json()
    assert response.status == 422, body
    assert body["error"]["message"] == ("image at index 1 of 3 ('notes.txt') is not an image: "
                                        "not an image Pillow can read")
    assert body["error"]["field"] == "image"
    assert body["rejected"] == [{"index": 1, "name": "notes.txt",
                                 "reason": "not an image Pillow can read"}]
    assert list(settings.tmp_dir.iterdir()) == []


async def test_more_images_than_the_limit_is_413(aiohttp_client, tmp_path, stub_broker,
                                                 stub_worker, settings):
    from dataclasses import replace

    from service.app import create_app

    limited = replace(settings, max_predict_images=2)
    client = await aiohttp_client(create_app(limited, broker=stub_broker))
    model_id, _ = await trained(client)
    status, body = await predict(client, model_id, png_bytes(1), png_bytes(2), png_bytes(3))
    assert status == 413, body
    assert "3 images in one request; at most 2" in body["error"]["message"]
    assert list(settings.tmp_dir.iterdir()) == []
    status, body = await predict(client, model_id, png_bytes(1), png_bytes(2))
    assert status == 200 and len(body["predictions"]) == 2


@pytest.fixture
def plain_settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "data",
                             SWEEPLAB_TEST_SCRIPT=str(write_fake_serve(tmp_path, opt_in=False)))
    ensure_data_dirs(settings)
    return settings


async def test_a_cold_failure_fails_the_request_naming_the_image(
        aiohttp_client, stub_broker, stub_worker, plain_settings, monkeypatch):
    from service.app import create_app

    monkeypatch.setenv("FAKE_SERVE_FAIL_OVER", "1000")  # png_bytes(size=2000) is bigger
    client = await aiohttp_client(create_app(plain_settings, broker=stub_broker))
    model_id, _ = await trained(client)
    status, body = await predict(client, model_id, png_bytes(1), png_bytes(2),
                                 png_bytes(3, size=2000))
    assert status == 409, body
    assert body["error"]["message"].startswith(
        "image at index 2 of 3 ('digit-2.png'): the test script exited with code 1: error: "
        "too big")
    assert body["failed"] == {"index": 2, "name": "digit-2.png"}
    status, body = await predict(client, model_id, png_bytes(3, size=2000))
    assert status == 409 and body["error"]["message"].startswith(
        "the test script exited with code 1")  # one image: today's message
    assert list(plain_settings.tmp_dir.iterdir()) == []


async def test_the_page_sends_several_images_and_lists_the_answers(client, db, stub_worker):
    model_id, _ = await trained(client)
    page = await (await client.get(f"/models/{model_id}")).text()
    assert re.search(r'<input id="predict-image" name="image" type="file"[^>]* multiple', page)
    form = image_parts(png_bytes(1), png_bytes(2))
    answer = await client.post(f"/models/{model_id}/predict?csrf={await csrf_of(client)}",
                               data=form)
    html = await answer.text()
    assert answer.status == 200
    assert html.count("<strong data-predicted-label>7</strong>") == 2
    assert 'data-prediction="1"' in html and "digit-1.png" in html
    assert html.count('src="data:image/png;base64,') == 2


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The tests' settings; `indirect` parametrization names other scripts (the stub
    worker's training too)."""
    settings = make_settings(tmp_path / "data", **getattr(request, "param", {}))
    ensure_data_dirs(settings)
    return settings


OUR_SCRIPTS = {"SWEEPLAB_TRAIN_SCRIPT": str(ROOT / "train.py"),
               "SWEEPLAB_TEST_SCRIPT": str(ROOT / "test.py")}


def digits_zip(sample: Path, per_label: int = 40) -> bytes:
    """A part of the bundled digits (fewer images: a faster sweep), zipped for upload."""
    out = sample / "small.zip"
    with zipfile.ZipFile(out, "w") as archive:
        for folder in sorted((sample / "train").iterdir()):
            for file in sorted(folder.iterdir())[:per_label]:
                archive.write(file, f"{folder.name}/{file.name}")
    return out.read_bytes()


@pytest.mark.parametrize("settings", [OUR_SCRIPTS], indirect=True)
async def test_our_test_py_answers_a_batch_warm_in_order(client, db, tmp_path, stub_worker,
                                                         settings):
    # Given our train.py's best model on part of the bundled digits
    sample = tmp_path / "sample"
    write_sample(sample)
    created = await client.post("/api/v1/models", json={"name": "digits"})
    model_id = (await created.json())["id"]
    form = aiohttp.FormData()
    form.add_field("images", digits_zip(sample), filename="small.zip")
    assert (await client.post(f"/api/v1/models/{model_id}/images", data=form)).status == 201
    best = await sweep_to_best(client, model_id, {"i": [0.01], "j": [1], "k": [400]})
    # When one request sends three held-out digits, and another sends one
    heldout = sorted((sample / "heldout").glob("*.png"))[::7][:3]
    status, body = await predict(client, model_id, *(p.read_bytes() for p in heldout))
    status_one, one = await predict(client, model_id, heldout[0].read_bytes())
    # Then the answers come in order, mostly right, from one warm process kept for the next
    assert status == 200 and status_one == 200, (body, one)
    labels = [p["output"]["label"] for p in body["predictions"]]
    expected = [p.name.split("_")[0] for p in heldout]
    assert sum(a == b for a, b in zip(labels, expected, strict=True)) >= 2, (labels, expected)
    assert [(p["name"], p["output"]["image"]) for p in body["predictions"]] == [
        ("digit-0.png", "digit-0.png"), ("digit-1.png", "digit-1.png"),
        ("digit-2.png", "digit-2.png")]
    assert {p["run_id"] for p in body["predictions"]} == {best}
    assert one["output"]["label"] == labels[0]
    assert one["output"]["confidence"] == body["predictions"][0]["output"]["confidence"]
    assert list(client.app[WARM_POOL].pids()) == [model_id]
    # And its serve loop answers a path it cannot read with an error line, and goes on
    run_dir = settings.runs_dir / str(best)
    lines = f"{heldout[0]}\n/no/such/image.png\n{heldout[1]}\n"
    served = subprocess.run([sys.executable, str(ROOT / "test.py"), "--serve", "--i", "0.01",
                             "--j", "1", "--k", "400"], input=lines, cwd=run_dir,
                            capture_output=True, text=True, timeout=120)
    printed = served.stdout.splitlines()
    assert served.returncode == 0 and json.loads(printed[0]) == {"sweeplab_serve": 1}
    assert len(printed) == 4 and "error" in printed[2] and "label" in printed[3]
