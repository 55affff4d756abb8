"""The dashboard's pages through aiohttp's test client: empty, running, finished and failed
data, the numbers they show, sign-in and forgery protection."""

from __future__ import annotations

import re
from html import unescape

import aiohttp
import pytest

from tests.api_support import (
    TWO,
    csrf_of,
    post_sweep,
    sweep_form_fields,
    sweep_to_end,
    upload_two_labels,
    wait_for_status,
)
from tests.helpers import png_bytes, settle, zip_bytes


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
                              {"i": "0.1, 0.2", "j": "1, 4", "k": "5", "timeout_s": ""})
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
    assert (f'<p class="big" id="best">Best accuracy (maximize) <strong class="best-value">'
            f'{done["best"]["accuracy"]:.3f}</strong> — <a href="/experiments/1">experiment 1</a>'
            in model_page)


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
    from service.web.dashboard.heatmap import axes

    assert axes(None, None, {"i": [1, 2, 3], "j": [1, 2, 3], "k": [1, 2, 3]}) == ("i", "j", ["k"])
    assert axes(None, None, {"i": [1], "j": [2], "k": [1, 2, 4]}) == ("i", "k", ["j"])
    assert axes(None, None, {"i": [1], "j": [1, 2], "k": [1, 2]}) == ("j", "k", ["i"])
    assert axes(None, None, {"i": [1, 2], "j": [1], "k": [1, 2]}) == ("i", "k", ["j"])
    assert axes(None, None, {"i": [1, 2], "j": [1, 2, 3], "k": [1]}) == ("i", "j", ["k"])
    # what the reader chose wins, and a half choice is completed with the fullest axis left
    assert axes("j", "k", {"i": [1, 2, 3], "j": [1], "k": [1]}) == ("j", "k", ["i"])
    assert axes("j", None, {"i": [1], "j": [1], "k": [1, 2]}) == ("j", "k", ["i"])
    # any names, in the grid's order; the rest are facets; one parameter has no y
    grid = {"optimizer": ["sgd", "adam"], "lr": [0.1, 0.01, 0.001], "layers": [1, 2, 3],
            "batchnorm": [True, False]}
    assert axes(None, None, grid) == ("lr", "layers", ["optimizer", "batchnorm"])
    assert axes("optimizer", "nope", grid) == ("optimizer", "lr", ["layers", "batchnorm"])
    assert axes(None, None, {"lr": [0.1, 0.2]}) == ("lr", None, [])


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

    from actors.context import WorkerContext, worker_context

    # Given a training script that prints nothing at all
    silent = tmp_path / "silent_train.py"
    silent.write_text("import sys\nsys.exit(0)\n")
    monkeypatch.setattr("actors.context._context", WorkerContext(
        dataclasses.replace(settings, train_script=silent), worker_context().store))
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


def cell_details(html: str) -> list[dict[str, str]]:
    """Each heatmap cell's data attributes and the text of its lines."""
    found = []
    for group in re.findall(r'<g class="cell"(.*?)</g>', html, re.S):
        attributes = dict(re.findall(r'data-([\w-]+)="([^"]*)"', group.split(">", 1)[0]))
        lines = re.findall(r'<text [^>]*class="value[^"]*">([^<]*)</text>', group)
        found.append({**attributes, "lines": lines, "fill": re.search(r'fill="(#\w+)"',
                                                                       group).group(1)})
    return found


async def test_repeats_show_each_configuration_with_its_interval(client, db, stub_worker,
                                                                 monkeypatch):
    from service.web.dashboard import data

    # Given a script whose accuracy the seed decides (j=2 better by 0.05), run 3 times each
    monkeypatch.setenv("FAKE_TRAIN_MODE", "seeded")
    done = await sweep_to_end(client, {"grid": TWO, "repeats": 3})
    # When its page is opened
    page = await client.get(f"/experiments/{done['id']}")
    html = await page.text()
    assert page.status == 200
    # Then it names the objective and the repeats
    assert "objective: <strong>accuracy</strong>, maximised" in html
    assert "3 repeats of each configuration (seeds 0–2)" in html
    # And each grid point is one cell: mean ± 95% half-width over n=3, the best one marked
    shown = {cell["runs"]: cell for cell in cell_details(html)}
    assert len(shown) == 2 and all(len(runs.split()) == 3 for runs in shown)
    best = next(cell for cell in shown.values() if cell.get("best"))
    assert best["lines"] == ["0.560 ± 0.025 ★", "n=3"] and float(best["value"]) == 0.56
    assert int(best["run-id"]) == done["best"]["run_id"]
    other = next(cell for cell in shown.values() if not cell.get("best"))
    assert other["lines"] == ["0.510 ± 0.025", "n=3"]
    # And the configurations table and the comparison sentence follow the API
    assert html.count('data-config="') == 2
    assert re.search(r"best vs runner-up: Welch p = 0\.00\d+ — distinguishable", html)
    # And the runs table has a seed column that sorts
    assert '>Seed</a></th>' in html
    assert html.count('<td class="num" data-label="Seed" data-seed>') == 6
    by_seed = await (await client.get(f"/experiments/{done['id']}?sort=seed&dir=desc")).text()
    seeds = re.findall(r'<td class="num" data-label="Seed" data-seed>(\d+)</td>', by_seed)
    assert seeds == ["2", "2", "1", "1", "0", "0"]
    run_page = await (await client.get(f"/runs/{done['best']['run_id']}")).text()
    assert 'id="run-seed">2 ' in run_page
    # When the runner-up cannot be told apart, or there is nothing to test, the page says so
    real = data.experiment_json
    for comparison, said in (({"welch_p_value": 0.41, "distinguishable": False},
                              "not distinguishable (p = 0.41): more repeats may tell them "
                              "apart"), (None, None)):
        monkeypatch.setattr(data, "experiment_json",
                            lambda e, c=comparison, **kw: {**real(e, **kw), "comparison": c})
        live = await client.get(f"/experiments/{done['id']}/live")
        text = await live.text()
        assert live.status == 200
        assert (said in text) if said else "best vs runner-up" not in text


async def test_repeats_that_all_gave_the_same_value_are_shown_as_such_not_as_certain(
        client, db, stub_worker, monkeypatch):
    # Given a script whose value ignores its seed, run 3 times per configuration
    monkeypatch.setenv("FAKE_TRAIN_MODE", "smooth")
    done = await sweep_to_end(client, {"grid": TWO, "repeats": 3})
    # When its page is opened
    page = await client.get(f"/experiments/{done['id']}")
    html = await page.text()
    assert page.status == 200
    # Then the comparison makes no claim and asks about the seed
    assert "distinguishable" not in html and "Welch p" not in html
    assert re.search(r"best vs runner-up: no test: every seed gave the same value for the "
                     r"best and the runner-up: does the script use SWEEPLAB_SEED\?", html)
    # And no mean is shown as certain: each says its seeds were all equal
    assert html.count(" ± 0 (every seed the same)</td>") == 2
    assert re.search(r'id="experiment-best">[\d.]+ ± 0 \(every seed the same\)</strong>', html)
    cells = cell_details(html)
    assert len(cells) == 2 and all(cell["lines"][1:] == ["n=3 · seeds equal"] for cell in cells)
    assert html.count("3 succeeded, every seed gave the same value</title>") == 2


async def test_a_minimised_loss_is_shown_and_the_smallest_is_best(client, db, stub_worker,
                                                                 monkeypatch):
    # Given a script that prints only a loss (i x 10), minimised
    monkeypatch.setenv("FAKE_TRAIN_MODE", "loss")
    done = await sweep_to_end(client, {"grid": {"i": [0.3, 0.1, 0.2], "j": [1], "k": [5]},
                                       "objective": {"metric": "loss", "direction": "minimize"}})
    # When its page is opened
    page = await client.get(f"/experiments/{done['id']}")
    html = await page.text()
    assert page.status == 200
    assert "objective: <strong>loss</strong>, minimised" in html
    assert 'id="heatmap-h">Loss over' in html
    # Then the cells show the loss, the smallest marked best and at the better (yellow) end
    cells = {cell["value"]: cell for cell in cell_details(html)}
    assert sorted(cells) == ["1.0", "2.0", "3.0"]
    assert cells["1.0"].get("best") and cells["1.0"]["lines"] == ["1.000 ★"]
    assert [v for v, cell in cells.items() if cell.get("best")] == ["1.0"]
    assert (cells["1.0"]["fill"], cells["3.0"]["fill"]) == ("#fde725", "#440154")
    assert ">3</text>" in html and ">1</text>" in html and "better →" in html
    # And the marginal effects name the loss and take the smallest as best
    assert "Marginal effect of each parameter on loss (smaller is better)" in html
    assert '<td class="num effect-best">1.000</td>' in html
    # And the runs table has a loss column, ascending first (best first), next to accuracy
    assert re.search(r'<a href="\?sort=value&amp;x=\w&amp;y=\w">loss</a>', html)
    by_loss = await (await client.get(f"/experiments/{done['id']}?sort=value")).text()
    assert re.findall(r'<td class="num" data-label="loss" data-value>([^<]*)</td>', by_loss) == [
        "1.000", "2.000", "3.000"]
    assert html.count('<td class="num" data-label="Accuracy" data-accuracy>—</td>') == 3
    run_page = await (await client.get(f"/runs/{done['best']['run_id']}")).text()
    assert 'id="run-value">1.000 ' in run_page
    model_page = await (await client.get(f"/models/{done['model_id']}")).text()
    assert 'Best loss (minimize) <strong class="best-value">1.000</strong>' in model_page


def test_a_repeated_cell_in_progress_counts_its_runs():
    from service.web.dashboard.heatmap import make_cell, point_runs
    from service.web.dashboard.scale import Scale

    def run(run_id: int, status: str, value: float | None = None) -> dict:
        return {"id": run_id, "status": status, "value": value, "accuracy": value,
                "params": {"i": 0.1}}

    # Given a grid point of three seeds: one succeeded, one failed, one still running
    runs = [run(1, "succeeded", 0.9), run(2, "failed"), run(3, "running")]
    config = {"n": 1, "mean": 0.9, "ci95": None}
    cell = make_cell(point_runs(runs, config, "maximize", best_run_id=None), Scale())
    # Then the cell says how far it is, counting the failed run as ended
    assert (cell.status, cell.text, cell.detail) == ("running", "2/3 done", "n=1 · 1 failed")
    # And once all have ended, it shows the mean of those that succeeded
    runs[2] = run(3, "succeeded", 0.8)
    done = make_cell(point_runs(runs, {"n": 2, "mean": 0.85, "ci95": [0.8, 0.9]}, "maximize",
                                1), Scale())
    assert (done.status, done.text, done.detail) == ("succeeded", "0.850 ± 0.050",
                                                     "n=2 · 1 failed")
    assert done.best and done.run_id == 1


def test_the_colour_scale_puts_the_better_end_right():
    from service.web.dashboard.scale import Scale

    loss = Scale("loss", "minimize", 1.0, 3.0)
    assert (loss.score(1.0), loss.score(3.0), loss.score(2.0)) == (1.0, 0.0, 0.5)
    assert loss.ticks() == ["3", "2", "1"]
    assert Scale().ticks() == ["0", "0.5", "1"] and Scale().score(0.75) == 0.75
    assert Scale("loss", "minimize", 2.0, 2.0).score(2.0) == 1.0  # one value: the best


async def test_the_models_best_names_its_metric_direction_and_experiment(client, db):
    from service.core.tables import MLModel

    # Given a model whose accuracy sweep reached 0.9, then a loss sweep whose best run (loss
    # 0.123) has an accuracy of only 0.5: the model's best follows the newest objective
    await post_form(client, "/models", {"name": "digits"})
    await upload_two_labels(client, 1)
    grid = {"i": [0.1], "j": [1], "k": [5]}
    for body in ({"grid": grid}, {"grid": grid, "objective": {"metric": "loss",
                                                              "direction": "minimize"}}):
        created = await client.post("/api/v1/models/1/experiments", json={**body, "start": False})
        assert created.status == 201
    settle(1, {0: {"value": 0.9, "accuracy": 0.9}}, best=0, curves={})
    (loss_run,) = settle(2, {0: {"value": 0.123, "accuracy": 0.5}}, best=0, curves={})
    MLModel.update(best_run_id=loss_run).where(MLModel.id == 1).execute()
    # When the models and the model are shown
    index = await (await client.get("/")).text()
    model = await (await client.get("/models/1")).text()
    # Then both say the best is by the loss, minimised, and from experiment 2, not accuracy
    said = ('loss (minimize) <strong class="best-value">0.123</strong> — '
            '<a href="/experiments/2">experiment 2</a>')
    assert f'<td class="best-run" data-label="Best">{said}</td>' in index
    assert "Best accuracy" not in index and "0.500" not in index
    assert f'<p class="big" id="best">Best {said}</p>' in model
    assert f'<a href="/runs/{loss_run}">run {loss_run}</a> with i=0.1 · j=1 · k=5' in model


def test_a_best_that_names_its_metric_is_shown_as_it_says(db):
    from service.web.dashboard.data import best_view

    # Given a best whose view already names its metric and direction (its experiment is not
    # read: there is none)
    best = {"run_id": 3, "experiment_id": 99, "params": {"i": 0.1, "j": 1, "k": 5},
            "seed": 0, "accuracy": 0.8, "value": 0.8, "metric": "accuracy",
            "direction": "maximize"}
    # Then the pages take them and show its value (every run's since m0006 filled them)
    assert best_view(best) == {**best, "shown": 0.8}
    assert best_view(None) is None


# --- the sweep form ---------------------------------------------------------------------------

SHOWN = ("grid", "search", "objective", "repeats", "early_stopping", "reuse", "timeout_s")


async def test_the_sweep_form_as_shown_starts_the_default_grid(client, db):
    # Given a model with images
    await post_form(client, "/models", {"name": "digits"})
    await upload_two_labels(client, 1)
    # When its sweep form is sent as shown
    html = await (await client.get("/models/1")).text()
    fields = sweep_form_fields(html)
    assert ("direction", "maximize") in fields and ("metric", "accuracy") in fields
    started = await post_sweep(client, {})
    # Then the default grid starts: the accuracy maximised, one run each, results reused
    assert started.status == 303 and started.headers["Location"].startswith("/experiments/1?")
    shown = await (await client.get("/api/v1/experiments/1")).json()
    assert (shown["status"], len(shown["runs"])) == ("running", 27)
    assert {key: shown[key] for key in SHOWN} == {
        "grid": {"i": [0.001, 0.01, 0.1], "j": [1, 2, 4], "k": [1000, 2000, 4000]},
        "search": {"strategy": "grid"}, "objective": {"metric": "accuracy",
                                                      "direction": "maximize"},
        "repeats": 1, "early_stopping": None, "reuse": True, "timeout_s": 1500.0}
    await client.post("/api/v1/experiments/1/cancel")


async def test_the_sweep_form_sends_what_the_api_takes(client, db):
    # Given a model with images
    await post_form(client, "/models", {"name": "digits"})
    await upload_two_labels(client, 1)
    # When a random search with every option is started from the form (a browser with
    # JavaScript leaves out the fields of other strategies: parallel here)
    started = await post_sweep(client, {
        "strategy": "random", "runs": "3", "seed": "7", "parallel": "",
        "param_values_0": "0.0001..0.1", "param_log_0": "1", "param_values_1": "1, 2",
        "param_values_2": "5 .. 9",
        "metric": "loss", "direction": "minimize", "repeats": "2", "rule": "median",
        "min_step": "2", "reuse": "false", "timeout_s": "60"})
    assert started.status == 303, await started.text()
    # Then the experiment is what the same JSON body makes through the API
    body = {"search": {"strategy": "random", "runs": 3, "seed": 7},
            "grid": {"i": {"low": 0.0001, "high": 0.1, "log": True}, "j": [1, 2],
                     "k": {"low": 5, "high": 9}},
            "objective": {"metric": "loss", "direction": "minimize"}, "repeats": 2,
            "early_stopping": {"rule": "median", "min_step": 2}, "reuse": False,
            "timeout_s": 60}
    api = await client.post("/api/v1/models/1/experiments", json={**body, "start": False})
    assert api.status == 201
    from_api = await api.json()
    from_form = await (await client.get("/api/v1/experiments/1")).json()
    assert {key: from_form[key] for key in SHOWN} == {key: from_api[key] for key in SHOWN}
    assert from_form["grid"]["k"] == {"low": 5, "high": 9, "log": False}
    assert [run["params"] for run in from_form["runs"]] == [
        run["params"] for run in from_api["runs"]]  # the same seed draws the same
    assert (from_form["status"], len(from_form["runs"])) == ("running", 6)
    await client.post("/api/v1/experiments/1/cancel")


MISTAKES = [  # what is typed, the same mistake as a JSON body (or the form's own message), the
    # input it marks
    ({"strategy": "random", "runs": "9999"}, {"search": {"strategy": "random", "runs": 9999}},
     "runs"),
    ({"strategy": "grid", "runs": "5"}, {"search": {"strategy": "grid", "runs": 5}},
     "strategy"),
    ({"param_values_0": "0.0001..0.1"},
     {"grid": {"i": {"low": 0.0001, "high": 0.1, "log": False}}}, "param_values_0"),
    ({"param_values_1": "1, two"}, {"grid": {"j": [1, "two"]}}, "param_values_1"),
    ({"param_name_3": "lr", "param_values_3": "0.1, 0.1.1", "param_name_4": "op-t",
      "param_values_4": "adam"},
     {"grid": {"i": [0.001], "lr": [0.1, "0.1.1"], "op-t": ["adam"]}}, "param_name_4"),
    ({"param_name_3": "lr", "param_values_3": "--x, 0.1"},
     {"grid": {"i": [0.001, 0.01, 0.1], "j": [1, 2, 4], "k": [1000, 2000, 4000],
               "lr": ["--x", 0.1]}}, "param_values_3"),
    ({"param_name_3": "", "param_values_3": "0.1"},
     "grid: the values '0.1' need a parameter name", "param_name_3"),
    ({"param_name_3": "lr", "param_values_3": ""},
     "grid.lr: give its values, separated by commas", "param_values_3"),
    ({"param_name_3": "j", "param_values_3": "3"}, "grid: 'j' is named twice", "param_name_3"),
    ({"metric": "loss", "direction": ""}, {"objective": {"metric": "loss", "direction": ""}},
     "direction"),
    ({"repeats": "0"}, {"repeats": 0}, "repeats"),
    ({"min_step": "5"}, {"early_stopping": {"min_step": 5}}, "rule"),
    ({"timeout_s": "-1"}, {"timeout_s": -1}, "timeout_s"),
    ({"strategy": "random", "runs": "4", "param_values_0": "0.001, 0.01", "param_log_0": "1"},
     "grid.i: a log scale needs a range (low..high), not a list", "param_values_0"),
]


@pytest.mark.parametrize(("typed", "body", "field"), MISTAKES)
async def test_a_mistake_in_the_sweep_form_shows_the_apis_message(client, db, typed, body,
                                                                   field):
    # Given a model with images
    await post_form(client, "/models", {"name": "digits"})
    await upload_two_labels(client, 1)
    # When the sweep form is sent with a mistake
    page = await post_sweep(client, typed)
    html = await page.text()
    # Then the model page comes back with the API's message above the form, and no sweep
    message = re.search(r'<p class="notice error" id="sweep-error" role="alert">([^<]*)</p>',
                        html)
    assert page.status == 422 and message, html
    if isinstance(body, dict):
        api = await client.post("/api/v1/models/1/experiments", json=body)
        assert api.status == 422
        assert unescape(message.group(1)) == (await api.json())["error"]["message"]
    else:
        assert unescape(message.group(1)) == body  # the form's own: no JSON body makes it
    assert (await (await client.get("/api/v1/models/1/experiments")).json()) == {
        "experiments": []}
    # And the input it is about is marked, and what was typed is still there
    assert re.findall(r'name="(\w+)"[^>]*aria-invalid="true"', html) == [field]
    for name, value in typed.items():
        if "_log" in name:
            assert re.search(rf'name="{name}" value="1" checked', html)
        elif name in ("strategy", "direction"):
            assert re.search(rf'<option value="{value}" selected>', html)
        else:
            assert f'name="{name}" value="{value}"' in html
