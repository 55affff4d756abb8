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
    again.add_field("label", "4")
    again.add_field("images", png_bytes(9), filename="c.png")
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


def test_the_heatmap_axes_default_to_the_parameters_with_most_values():
    from service.dashboard.heatmap import axes

    assert axes(None, None, {"i": [1, 2, 3], "j": [1, 2, 3], "k": [1, 2, 3]}) == ("i", "j", "k")
    assert axes(None, None, {"i": [1], "j": [2], "k": [1, 2, 4]}) == ("i", "k", "j")
    assert axes(None, None, {"i": [1], "j": [1, 2], "k": [1, 2]}) == ("j", "k", "i")
    assert axes(None, None, {"i": [1, 2], "j": [1], "k": [1, 2]}) == ("i", "k", "j")
    assert axes(None, None, {"i": [1, 2], "j": [1, 2, 3], "k": [1]}) == ("i", "j", "k")
    # what the reader chose wins, and a half choice is completed with the fullest axis left
    assert axes("j", "k", {"i": [1, 2, 3], "j": [1], "k": [1]}) == ("j", "k", "i")
    assert axes("j", None, {"i": [1], "j": [1], "k": [1, 2]}) == ("j", "k", "i")


async def test_a_heatmap_of_single_values_draws_the_axis_that_varies(client, db):
    # Given a sweep over one i, one j and three k
    await post_form(client, "/models", {"name": "digits"})
    await upload_two_labels(client, 1)
    grid = {"i": [0.01], "j": [2], "k": [1000, 2000, 4000]}
    await client.post("/api/v1/models/1/experiments", json={"grid": grid, "start": False})
    # When its page is opened without choosing axes
    html = await (await client.get("/experiments/1")).text()
    # Then the map is i across and k down, in one panel (j = 2), not three 1 x 1 maps
    assert 'id="heatmap-h">Accuracy over i × k<' in html
    assert re.search(r'aria-current="true">i × k<', html)
    assert html.count('<figure class="heatmap-panel">') == 1
    assert 'data-facet="j" data-facet-value="2"' in html
    assert len(cells(html)) == 3
    assert "&amp;x=i&amp;y=k" in html  # the live view and the sort links keep those axes
    # And axes chosen in the address still win
    chosen = await (await client.get("/experiments/1?x=i&y=j")).text()
    assert chosen.count('<figure class="heatmap-panel">') == 3


async def test_the_run_page_names_its_model(client, db):
    # Given a model with a long name and a sweep not started
    name = "m" * 200
    await post_form(client, "/models", {"name": name})
    await upload_two_labels(client, 1)
    await client.post("/api/v1/models/1/experiments",
                      json={"grid": {"i": [0.1], "j": [1], "k": [5]}, "start": False})
    # When a run's page is opened, then its breadcrumb names the model, as the experiment's does
    html = await (await client.get("/runs/1")).text()
    assert f'<a class="crumb" href="/models/1" title="{name}">{name}</a>' in html
    assert "model 1" not in html
    experiment = await (await client.get("/experiments/1")).text()
    assert f'href="/models/1" title="{name}">{name}</a>' in experiment


def log_of(html: str) -> str:
    return re.search(r'<pre class="log" id="log"[^>]*>(.*?)</pre>', html, re.S).group(1)


async def test_an_empty_log_says_whether_the_script_may_still_print(client, db):
    # Given a run that is queued
    await post_form(client, "/models", {"name": "digits"})
    await upload_two_labels(client, 1)
    await client.post("/api/v1/models/1/experiments",
                      json={"grid": {"i": [0.1], "j": [1], "k": [5]}, "start": False})
    assert log_of(await (await client.get("/runs/1")).text()) == "(nothing printed yet)"
    # When it is cancelled before it ran, then the page says the script never ran
    await client.post("/api/v1/experiments/1/cancel")
    live = await (await client.get("/runs/1/live")).text()
    assert 'data-final="true"' in live and log_of(live) == "(the script never ran)"


async def test_a_finished_silent_script_is_said_to_have_printed_nothing(client, db, settings,
                                                                       stub_worker, tmp_path,
                                                                       monkeypatch):
    import dataclasses

    import actors

    # Given a training script that prints nothing at all
    silent = tmp_path / "silent_train.py"
    silent.write_text("import sys\nsys.exit(0)\n")
    monkeypatch.setattr(actors, "settings", dataclasses.replace(settings, train_script=silent))
    await post_form(client, "/models", {"name": "digits"})
    await upload_two_labels(client, 1)
    await client.post("/api/v1/models/1/experiments",
                      json={"grid": {"i": [0.1], "j": [1], "k": [5]}})
    # When its run has ended
    done = await wait_for_status(client, 1, {"completed", "failed"})
    assert done["runs"][0]["status"] == "failed"
    # Then its page says the script printed nothing, not that it may print yet
    html = await (await client.get(f"/runs/{done['runs'][0]['id']}")).text()
    assert log_of(html) == "(the script printed nothing)"
