"""The dashboard's pages through aiohttp's test client: empty, running, finished and failed
data, the numbers they show, sign-in and forgery protection."""

from __future__ import annotations

import re

import aiohttp

from tests.helpers import png_bytes, zip_bytes
from tests.test_api import upload_two_labels, wait_for_status


async def csrf_of(client) -> str:
    page = await client.get("/")
    return re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)


async def post_form(client, path, fields):
    token = await csrf_of(client)
    return await client.post(path, data={"csrf": token, **fields}, allow_redirects=False)


def cells(html: str) -> list[dict[str, str]]:
    pattern = (r'<g class="cell" data-run-id="(\d*)" data-status="(\w+)" '
               r'data-accuracy="([^"]*)"( data-best="true")?')
    return [{"run_id": m[0], "status": m[1], "accuracy": m[2], "best": bool(m[3])}
            for m in re.findall(pattern, html)]


async def test_empty_dashboard_and_creating_a_model(client, db):
    page = await client.get("/")
    assert page.status == 200
    assert "No models yet" in await page.text()
    assert "HttpOnly" in page.headers["Set-Cookie"] and "SameSite=Strict" in page.headers[
        "Set-Cookie"]
    created = await post_form(client, "/models", {"name": "digits", "description": "d"})
    assert created.status == 303 and created.headers["Location"].startswith("/models/1")
    model = await (await client.get("/models/1")).text()
    assert "<h1>digits</h1>" in model and "No images yet." in model
    assert "No run has succeeded yet" in model


async def test_forms_without_the_anti_forgery_token_are_refused(client, db):
    await client.get("/")
    forged = await client.post("/models", data={"name": "x", "csrf": "guess"},
                               allow_redirects=False)
    assert forged.status == 403
    assert "anti-forgery token" in await forged.text()
    listed = await (await client.get("/api/v1/models")).json()
    assert listed["models"] == []


async def test_upload_form_and_progress_upload(client, db):
    await post_form(client, "/models", {"name": "digits"})
    token = await csrf_of(client)
    form = aiohttp.FormData()
    form.add_field("images", zip_bytes({"3/a.png": png_bytes(1), "4/b.png": png_bytes(2)}),
                   filename="t.zip")
    plain = await client.post(f"/models/1/upload?csrf={token}", data=form,
                              allow_redirects=False)
    assert plain.status == 303 and "2%20image" in plain.headers["Location"]
    again = aiohttp.FormData()
    again.add_field("images", png_bytes(9), filename="c.png")
    again.add_field("label", "4")
    xhr = await client.post("/models/1/upload", data=again,
                            headers={"X-CSRF-Token": token, "Accept": "application/json"})
    assert xhr.status == 201 and (await xhr.json())["labels"] == {"3": 1, "4": 2}
    page = await (await client.get("/models/1")).text()
    assert 'data-label-count="4">2<' in page
    assert len(re.findall(r'<img class="thumb" src="/models/1/images/[0-9a-f]{64}"', page)) == 3
    thumb = re.search(r'src="(/models/1/images/[0-9a-f]{64})"', page).group(1)
    assert (await client.get(thumb)).content_type == "image/png"


async def test_a_created_sweep_shows_27_queued_cells(client, db):
    await post_form(client, "/models", {"name": "digits"})
    await upload_two_labels(client, 1)
    await client.post("/api/v1/models/1/experiments", json={"start": False})
    page = await client.get("/experiments/1")
    html = await page.text()
    assert page.status == 200
    assert 'id="experiment-status">created<' in html
    assert [c["status"] for c in cells(html)] == ["queued"] * 27
    assert html.count("<figure class=\"heatmap-panel\">") == 3  # one panel per k
    assert 'data-count="queued">27<' in html
    assert ">Start</button>" in html and ">Cancel</button>" in html


async def test_finished_sweep_with_failures_shows_the_right_numbers(client, db, stub_worker,
                                                                   monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_MODE", "fail_j4")
    await post_form(client, "/models", {"name": "digits"})
    await upload_two_labels(client, 1)
    started = await post_form(client, "/models/1/experiments",
                              {"i": "0.1, 0.2", "j": "1 4", "k": "5", "timeout_s": ""})
    assert started.status == 303 and started.headers["Location"].startswith("/experiments/1")
    done = await wait_for_status(client, 1, {"completed"})
    html = await (await client.get("/experiments/1")).text()
    shown = {int(c["run_id"]): c for c in cells(html)}
    for run in done["runs"]:
        cell = shown[run["id"]]
        assert cell["status"] == run["status"]
        if run["status"] == "succeeded":
            assert float(cell["accuracy"]) == run["accuracy"]
            assert f"{run['accuracy']:.3f}" in html
    assert [c["run_id"] for c in shown.values() if c["best"]] == [str(done["best"]["run_id"])]
    assert [c["status"] for c in shown.values()].count("failed") == 2
    assert html.count('class="value">✗ failed<') == 2
    assert 'data-final="true"' in html
    assert ">Rerun failed runs</button>" in html
    by_accuracy = await (await client.get("/experiments/1?sort=accuracy&dir=desc")).text()
    first_row = re.search(r'<tr (?:class="best" )?data-run-id="(\d+)"', by_accuracy).group(1)
    assert int(first_row) == done["best"]["run_id"]
    failed = next(r for r in done["runs"] if r["status"] == "failed")
    run_page = await (await client.get(f"/runs/{failed['id']}")).text()
    assert "exited with code 3" in run_page and "loading images from" in run_page
    live = await client.get(f"/runs/{failed['id']}/live")
    assert (await live.text()).startswith('<div data-status="failed" data-final="true">')
    model_page = await (await client.get("/models/1")).text()
    assert f"accuracy <strong id=\"best-accuracy\">{done['best']['accuracy']:.3f}" in model_page


async def test_predict_form_shows_the_image_and_the_answer(client, db, stub_worker):
    await post_form(client, "/models", {"name": "digits"})
    await upload_two_labels(client, 1)
    await client.post("/api/v1/models/1/experiments",
                      json={"grid": {"i": [0.1], "j": [1], "k": [5]}})
    done = await wait_for_status(client, 1, {"completed"})
    form = aiohttp.FormData()
    form.add_field("image", png_bytes(4), filename="x.png")
    answer = await client.post(f"/models/1/predict?csrf={await csrf_of(client)}", data=form)
    html = await answer.text()
    assert answer.status == 200
    assert 'id="predicted-label">7<' in html
    assert 'src="data:image/png;base64,' in html
    assert f'href="/runs/{done["best"]["run_id"]}">run {done["best"]["run_id"]}' in html


async def test_pages_need_sign_in_when_a_token_is_set(aiohttp_client, tmp_path, stub_broker,
                                                      db):
    from service.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "guarded", SWEEPLAB_API_TOKEN="s3cret")
    client = await aiohttp_client(create_app(settings, broker=stub_broker))
    away = await client.get("/models/1", allow_redirects=False)
    assert away.status == 303 and away.headers["Location"] == "/login?next=/models/1"
    wrong = await client.post("/login", data={"token": "nope", "next": "/"})
    assert wrong.status == 401
    right = await client.post("/login", data={"token": "s3cret", "next": "//evil.example"},
                              allow_redirects=False)
    assert right.status == 303 and right.headers["Location"] == "/"
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "s3cret" not in cookie
    assert (await client.get("/")).status == 200
    assert (await client.get("/static/app.css")).status == 200


async def test_errors_on_pages_are_pages(client, db):
    missing = await client.get("/experiments/99")
    assert missing.status == 404 and missing.content_type == "text/html"
    assert "experiment 99 does not exist" in await missing.text()
    api = await client.get("/api/v1/experiments/99")
    assert api.content_type == "application/json"


async def test_a_running_sweep_shows_running_cells_and_stays_live(client, db, stub_worker,
                                                                   monkeypatch):
    import asyncio

    monkeypatch.setenv("FAKE_TRAIN_MODE", "hang")
    await post_form(client, "/models", {"name": "digits"})
    await upload_two_labels(client, 1)
    await client.post("/api/v1/models/1/experiments",
                      json={"grid": {"i": [0.1], "j": [1, 2], "k": [5]}})
    for _ in range(100):
        html = await (await client.get("/experiments/1/live")).text()
        if 'data-status="running"' in html.split("<g class", 1)[-1]:
            break
        await asyncio.sleep(0.1)
    assert html.startswith('<div data-status="running" data-final="false">')
    assert "running…" in html
    run_id = re.search(r'data-run-id="(\d+)" data-status="running"', html).group(1)
    run_page = await (await client.get(f"/runs/{run_id}")).text()
    assert 'data-live="/runs/' in run_page and 'id="run-status">running<' in run_page
    await client.post("/api/v1/experiments/1/cancel")
