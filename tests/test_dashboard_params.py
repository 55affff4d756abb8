"""The dashboard with parameters of any name (a string `optimizer`, a float `lr`, an integer
`layers` and a boolean `batchnorm`) and with a model's code versions, through the pages as a
browser gets them (real rows in a temporary database, fetched through the app)."""

from __future__ import annotations

import csv
import io
import re

from tests.api_support import make_model, post_sweep, sweep_form_fields, upload_two_labels
from tests.helpers import settle

ROW = r'<tr[^>]* data-run-id="(\d+)"'
GRID = {"optimizer": ["sgd", "adam"], "lr": [0.1, 0.01, 0.001], "layers": [1, 2],
        "batchnorm": [True, False]}


async def created(client, body: dict) -> dict:
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    response = await client.post(f"/api/v1/models/{model_id}/experiments",
                                  json={**body, "start": False})
    assert response.status == 201, await response.text()
    return await response.json()


def accuracy_of(params: dict) -> float:
    """adam beats sgd, a smaller lr is better: the best is adam, lr 0.001, 2 layers, no
    batchnorm."""
    return round(0.5 + 0.2 * (params["optimizer"] == "adam") + 0.05 * params["layers"]
                 - params["lr"] - 0.01 * params["batchnorm"], 6)


async def finished(client, grid: dict) -> tuple[dict, list[int]]:
    """An experiment over `grid` whose every run succeeded with accuracy_of its parameters."""
    experiment = await created(client, {"grid": grid})
    runs = experiment["runs"]
    values = [accuracy_of({**{"optimizer": "sgd", "lr": 0.1, "layers": 1, "batchnorm": False},
                           **run["params"]}) for run in runs]
    best = values.index(max(values))
    ids = settle(experiment["id"], {n: {"accuracy": v, "value": v} for n, v in
                                    enumerate(values)}, best=best, curves={})
    return experiment, ids


def heatmap_x_labels(html: str) -> list[str]:
    first = re.search(r'<svg class="heatmap".*?</svg>', html, re.S).group(0)
    return re.findall(r'<text x="[\d.]+" y="26" class="axis">([^<]+)</text>', first)


def parallel_svg(html: str) -> str | None:
    found = re.search(r'<figure class="chart parallel" data-chart="parallel">(.*?)</figure>',
                      html, re.S)
    return found.group(1) if found else None


async def test_a_grid_of_named_parameters_shows_them_in_every_view(client, db):
    # Given a finished grid over a string, a float, an integer and a boolean parameter
    experiment, ids = await finished(client, GRID)
    assert list(experiment["grid"]) == list(GRID)
    # When its page is opened
    page = await client.get(f"/experiments/{experiment['id']}")
    html = await page.text()
    assert page.status == 200
    # Then the heatmap is over the two with most values (lr, then the first of the ties),
    # across then down in the grid's order; the strings in the grid's order, not sorted
    assert 'id="heatmap-h">Accuracy over optimizer × lr<' in html
    assert heatmap_x_labels(html) == ["sgd", "adam"]
    # And the other two are facets: a panel per combination, captioned with their values
    assert re.findall(r"<figcaption>([^<]*)</figcaption>", html)[:4] == [
        "layers = 1 · batchnorm = true", "layers = 1 · batchnorm = false",
        "layers = 2 · batchnorm = true", "layers = 2 · batchnorm = false"]
    assert html.count('<figure class="heatmap-panel">') == 4
    assert len(re.findall(r'<g class="cell" data-run-id="\d+"', html)) == 24
    # And the axes links offer every pair of the parameters
    assert re.findall(r'>(\w+ × \w+)</a>', html) == [
        "optimizer × lr", "optimizer × layers", "optimizer × batchnorm", "lr × layers",
        "lr × batchnorm", "layers × batchnorm"]
    # And the marginal effects have a table per parameter, named
    assert re.findall(r'<table class="effect">\s*<caption>(\w+)</caption>', html) == list(GRID)
    # And the runs table a column per parameter, sortable, the values as scripts get them
    assert re.findall(r'<a href="\?sort=param%3A(\w+)', html) == list(GRID)
    first = re.search(rf'<tr[^>]* data-run-id="{ids[0]}">(.*?)</tr>', html, re.S)
    cells = dict(re.findall(r'data-label="(\w+)">([^<]*)</td>', first.group(1)))
    assert {name: cells[name] for name in GRID} == {"optimizer": "sgd", "lr": "0.001",
                                                     "layers": "1", "batchnorm": "true"}
    # And the best run's parameters read name=value in the grid's order
    assert "optimizer=adam · lr=0.001 · layers=2 · batchnorm=false" in html


async def test_the_heatmap_axes_chosen_by_name_and_categorical_order_kept(client, db):
    experiment, _ = await finished(client, GRID)
    html = await (await client.get(
        f"/experiments/{experiment['id']}?x=batchnorm&y=optimizer")).text()
    assert 'id="heatmap-h">Accuracy over batchnorm × optimizer<' in html
    assert heatmap_x_labels(html) == ["true", "false"]
    down = re.findall(r'class="axis end">([^<]+)</text>',
                      re.search(r'<svg class="heatmap".*?</svg>', html, re.S).group(0))
    assert down == ["sgd", "adam"]
    assert html.count('<figure class="heatmap-panel">') == 6  # lr x layers


async def test_runs_sort_by_a_named_parameter_and_refuse_unknown_keys(client, db):
    experiment, ids = await finished(client, GRID)
    base = f"/experiments/{experiment['id']}"
    by_lr = await (await client.get(f"{base}?sort=param:lr")).text()
    order = [int(n) for n in re.findall(ROW, by_lr)]
    lrs = {run["id"]: run["params"]["lr"] for run in experiment["runs"]}
    assert [lrs[n] for n in order] == sorted(lrs.values())
    assert 'aria-sort="ascending"' in by_lr
    # a name the experiment does not have, or a key of the run that is not a column: by id
    for key in ("param:nope", "params", "experiment_id", "param:"):
        page = await client.get(f"{base}?sort={key}")
        html = await page.text()
        assert page.status == 200
        assert [int(n) for n in re.findall(
            ROW, html)] == sorted(ids)


async def test_three_or_more_parameters_get_a_parallel_coordinates_chart(client, db):
    # Given the finished grid of four parameters
    experiment, ids = await finished(client, GRID)
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    svg = parallel_svg(html)
    # Then the chart has an axis per parameter in the grid's order and one for the objective
    assert svg is not None
    assert re.findall(r'data-axis="(\w+)"', svg) == [*GRID, "accuracy"]
    # And a line per run that succeeded, through every axis, the best one marked and last
    lines = re.findall(r'<polyline class="pc-line( best)?" data-run-id="(\d+)" '
                       r'points="([^"]+)"', svg)
    assert sorted(int(run_id) for _, run_id, _ in lines) == sorted(ids)
    assert all(len(points.split()) == 5 for _, _, points in lines)
    shown = await (await client.get(f"/api/v1/experiments/{experiment['id']}")).json()
    assert [int(run_id) for best, run_id, _ in lines if best] == [shown["best"]["run_id"]]
    assert int(lines[-1][1]) == shown["best"]["run_id"]
    # And the categorical axis labels its values in the grid's order
    optimizer = re.search(r'data-axis="optimizer">(.*?)</g>', svg, re.S).group(1)
    assert re.findall(r'class="axis end"[^>]*>([^<]+)<', optimizer) == ["sgd", "adam"]
    # And the integer one ticks whole numbers only
    layers = re.search(r'data-axis="layers">(.*?)</g>', svg, re.S).group(1)
    assert re.findall(r'class="axis end"[^>]*>([^<]+)<', layers) == ["1", "2"]
    assert "Every run that succeeded (24), one line each." in html


async def test_two_parameters_have_no_parallel_chart(client, db):
    experiment, _ = await finished(client, {"optimizer": ["sgd", "adam"], "lr": [0.1, 0.01]})
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    assert parallel_svg(html) is None and 'id="parallel-h"' not in html
    assert 'id="heatmap-h">Accuracy over optimizer × lr<' in html


async def test_one_parameter_is_a_single_row(client, db):
    experiment, ids = await finished(client, {"optimizer": ["sgd", "adam", "rmsprop"]})
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    assert 'id="heatmap-h">Accuracy over optimizer<' in html
    assert html.count('<figure class="heatmap-panel">') == 1
    assert heatmap_x_labels(html) == ["sgd", "adam", "rmsprop"]
    assert [int(n) for n in re.findall(r'<g class="cell" data-run-id="(\d+)"', html)] == ids
    assert 'class="axes"' not in html  # no pair of axes to choose


async def test_the_csv_has_a_column_per_parameter(client, db):
    # Given the finished grid, and a run whose error looks like a formula
    from service.core.tables import Run

    experiment, ids = await finished(client, GRID)
    Run.update(status="failed", error="=HYPERLINK(1)").where(Run.id == ids[1]).execute()
    # When its CSV is downloaded
    response = await client.get(f"/experiments/{experiment['id']}/runs.csv")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(await response.text())))
    # Then the header names each parameter in the grid's order, and each run is a row
    assert rows[0] == ["run", "trial", "seed", "status", "optimizer", "lr", "layers",
                       "batchnorm", "accuracy", "duration_s", "attempts", "reused_from", "error"]
    assert [int(row[0]) for row in rows[1:]] == ids
    assert rows[1][4:9] == ["sgd", "0.001", "1", "true", str(accuracy_of(
        {"optimizer": "sgd", "lr": 0.001, "layers": 1, "batchnorm": True}))]
    assert rows[2][3] == "failed" and rows[2][-1] == "'=HYPERLINK(1)"
    # And the page links to it
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    assert f'href="/experiments/{experiment["id"]}/runs.csv"' in html


async def test_a_csv_names_a_parameter_that_clashes_with_a_column(client, db):
    experiment = await created(client, {"grid": {"seed": [1, 2], "status": ["a"]},
                                        "objective": {"metric": "loss",
                                                      "direction": "minimize"}})
    text = await (await client.get(f"/experiments/{experiment['id']}/runs.csv")).text()
    assert text.splitlines()[0] == ("run,trial,seed,status,param:seed,param:status,loss,"
                                    "accuracy,duration_s,attempts,reused_from,error")
    assert (await client.get("/experiments/999/runs.csv")).status == 404


async def test_a_random_search_draws_a_categorical_parameter_in_the_grids_order(client, db):
    # Given a random search over a choice of strings, a log range and whole numbers
    space = {"optimizer": {"choices": ["sgd", "adam", "rmsprop"]},
             "lr": {"low": 1e-4, "high": 1e-1, "log": True}, "layers": [1, 2, 3]}
    experiment = await created(client, {"search": {"strategy": "random", "runs": 6, "seed": 2},
                                        "grid": space})
    settle(experiment["id"], {n: {"value": 0.1 * n, "accuracy": 0.1 * n} for n in range(6)},
           best=5, curves={})
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    # Then each parameter has its scatter: the strings evenly spaced in the space's order
    scatter = re.search(r'data-chart="scatter-optimizer">(.*?)</figure>', html, re.S).group(1)
    ticks = re.findall(r'<text class="axis" x="([\d.]+)" y="[^"]*">([^<]+)</text>', scatter)
    assert [label for _, label in ticks] == ["sgd", "adam", "rmsprop"]
    xs = [float(x) for x, _ in ticks]
    assert abs((xs[1] - xs[0]) - (xs[2] - xs[1])) < 0.2  # pixels rounded to 0.1
    dots = re.findall(r'<circle class="dot \w+" data-run-id="\d+" cx="([\d.]+)"', scatter)
    assert {float(x) for x in dots} <= set(xs)
    # And lr is on a log axis, the whole-number layers not
    assert "(log scale)" in re.search(r'data-chart="scatter-lr">(.*?)</figure>', html,
                                      re.S).group(1)
    assert "(log scale)" not in re.search(r'data-chart="scatter-layers">(.*?)</figure>', html,
                                          re.S).group(1)
    # And the parallel chart draws the six runs
    assert len(re.findall(r'<polyline class="pc-line', parallel_svg(html))) == 6


async def test_the_sweep_form_shows_the_default_rows_and_room_for_more(client, db):
    model_id = await make_model(client)
    fields = sweep_form_fields(await (await client.get(f"/models/{model_id}")).text())
    rows = [(value, dict(fields)[name.replace("name", "values")]) for name, value in fields
            if name.startswith("param_name_")]
    assert rows == [("i", "0.001, 0.01, 0.1"), ("j", "1, 2, 4"), ("k", "1000, 2000, 4000"),
                    ("", ""), ("", ""), ("", "")]


async def test_the_sweep_form_starts_a_grid_of_parameters_it_names(client, db):
    # Given a model with images
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    # When the form's rows are renamed and filled: a string, a float, an integer, a boolean,
    # i emptied (not one of them: no default comes back), j and k cleared entirely
    started = await post_sweep(client, {
        "param_name_0": "optimizer", "param_values_0": "sgd, adam",
        "param_name_1": "lr", "param_values_1": "0.1, 0.01",
        "param_name_2": "", "param_values_2": "",
        "param_name_3": "layers", "param_values_3": "2",
        "param_name_4": "batchnorm", "param_values_4": "true, false"})
    # Then the experiment has exactly those parameters, in the rows' order, typed
    assert started.status == 303, await started.text()
    shown = await (await client.get("/api/v1/experiments/1")).json()
    assert shown["grid"] == {"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1], "layers": [2],
                             "batchnorm": [True, False]}
    assert len(shown["runs"]) == 8
    assert shown["runs"][0]["params"] == {"optimizer": "sgd", "lr": 0.01, "layers": 2,
                                          "batchnorm": True}
    await client.post("/api/v1/experiments/1/cancel")
    # And a mistake in a named row marks that row, keeping every row as typed
    page = await post_sweep(client, {"param_name_4": "dropout", "param_values_4": "0.1, =x, "
                                                                              + "-y"})
    html = await page.text()
    assert page.status == 422
    assert "grid.dropout: &#39;-y&#39; starts with &#39;-&#39;" in html
    assert re.findall(r'name="(\w+)"[^>]*aria-invalid="true"', html) == ["param_values_4"]
    assert 'name="param_name_4" value="dropout"' in html


async def test_the_model_page_lists_code_versions_and_an_experiment_names_its_own(client, db):
    from datetime import datetime

    from service.core.tables import CodeVersion, Experiment

    # Given a model without code, and an experiment of it
    experiment = await created(client, {"grid": {"lr": [0.1]}})
    model_id = experiment["model_id"]
    page = await (await client.get(f"/models/{model_id}")).text()
    assert 'id="no-code"' in page
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    assert "<span id=\"code-version\">the deployment's train.py</span>" in html
    # When two versions are uploaded (rows as the upload API writes them) and it pins the first
    old, new = "a" * 64, "b" * 64
    CodeVersion.create(model=model_id, version=old, train="train.py", test="test.py",
                       files=[{"path": "train.py", "size": 1, "sha256": "c" * 64},
                              {"path": "test.py", "size": 1, "sha256": "d" * 64}],
                       uploaded_at=datetime(2026, 1, 1))
    CodeVersion.create(model=model_id, version=new, train="src/fit.py", test=None,
                       requirements="requirements.txt",
                       files=[{"path": "src/fit.py", "size": 1, "sha256": "e" * 64}],
                       uploaded_at=datetime(2026, 2, 1))
    Experiment.update(code_version=old).where(Experiment.id == experiment["id"]).execute()
    # Then the model page lists them newest first, the newest current, with their entry points
    page = await (await client.get(f"/models/{model_id}")).text()
    rows = re.findall(r'<tr data-version="(\w+)"><td><code title="\w+">(\w+)</code>'
                      r'( <span class="badge best">current</span>)?</td>\s*'
                      r'<td class="num">(\d+)</td>\s*<td>(.*?)</td>', page)
    assert [(v, short, bool(current), int(files)) for v, short, current, files, _ in rows] == [
        (new, "b" * 12, True, 1), (old, "a" * 12, False, 2)]
    assert rows[0][4] == ("train <code>src/fit.py</code> · <span class=\"muted\">no test "
                          "script</span> · <code>requirements.txt</code>")
    assert rows[1][4] == "train <code>train.py</code> · test <code>test.py</code>"
    assert "2026-02-01 00:00:00 UTC" in page
    # And the experiment names the version it pinned, not the current one
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    assert f'<code id="code-version" title="{old}">{"a" * 12}</code>' in html
