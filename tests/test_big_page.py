"""The experiment page of a large experiment (issue 24), through the page and its live
fragment, on SQLite and PostgreSQL: a page of runs with links by cursor, heatmap cells and
marginal effects equal to the means computed here from the runs, a bounded number of lines."""

from __future__ import annotations

import html
import re
import statistics
from collections import Counter

import pytest

from service.core.tables import Run
from service.web.dashboard.scale import number
from tests.api_support import model_with_images
from tests.helpers import finish_at_random

# 5 x 5 x 4 x 5 = 500 configurations, 4 seeds each: 2,000 runs, 20 heatmap panels
GRID = {"i": [0.001, 0.003, 0.01, 0.03, 0.1], "j": [1, 2, 3, 4, 5], "k": [10, 20, 30, 40],
        "m": ["a", "b", "c", "d", "e"]}
REPEATS = 4
ROW = re.compile(r'<tr\s+(?:class="best"\s+)?data-run-id="(\d+)"')


@pytest.fixture
async def big(any_client):
    """(client, experiment id, {run id: (status, value, params)}) of a 2,000-run experiment
    under way: created by the API, its results written as rows."""
    model_id = await model_with_images(any_client)
    created = await any_client.post(f"/api/v1/models/{model_id}/experiments",
                                    json={"grid": GRID, "repeats": REPEATS, "start": False})
    assert created.status == 201, await created.text()
    experiment_id = (await created.json())["id"]
    outcomes = finish_at_random(experiment_id, seed=3)
    params = dict(Run.select(Run.id, Run.params).where(Run.experiment == experiment_id)
                  .tuples())
    runs = {run_id: (*outcome, params[run_id]) for run_id, outcome in outcomes.items()}
    return any_client, experiment_id, runs


async def page(client, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return await response.text()


def pager_link(text: str, which: str) -> str | None:
    found = re.search(rf'<a (?:rel="\w+" )?href="([^"]*)" data-page="{which}"', text)
    return html.unescape(found.group(1)) if found else None


def config_means(runs: dict) -> dict[tuple, list[float]]:
    values: dict[tuple, list[float]] = {}
    for status, value, params in runs.values():
        if status == "succeeded":
            values.setdefault(tuple(params.values()), []).append(value)
    return values


async def test_the_runs_table_is_a_page_with_links_by_cursor(big):
    client, experiment_id, runs = big
    path = f"/experiments/{experiment_id}"
    first = await page(client, path)
    # Then the first page holds 100 runs, the first 100 by id, a next link and no previous
    assert [int(n) for n in ROW.findall(first)] == sorted(runs)[:100]
    assert pager_link(first, "previous") is None and "2000 runs, 100 a page" in first
    # And following the next links sees every run once, in id order; previous goes back
    seen, text, pages = [], first, 0
    while True:
        seen += [int(n) for n in ROW.findall(text)]
        following = pager_link(text, "next")
        if following is None:
            break
        second = text
        text = await page(client, path + following)
        assert (await page(client, path + pager_link(text, "previous"))) == second
        pages += 1
    assert seen == sorted(runs) and pages == 19


async def test_sorted_by_value_the_pages_go_best_first_and_back(big):
    client, experiment_id, runs = big
    path = f"/experiments/{experiment_id}"
    text = await page(client, f"{path}?sort=accuracy")
    seen, trail = [], [text]
    while (following := pager_link(text, "next")) is not None:
        seen += [int(n) for n in ROW.findall(text)]
        text = await page(client, path + following)
        trail.append(text)
    seen += [int(n) for n in ROW.findall(text)]
    valued = sorted((-value, run_id) for run_id, (_, value, _) in runs.items()
                    if value is not None)
    unvalued = sorted(run_id for run_id, (_, value, _) in runs.items() if value is None)
    assert seen == [run_id for _, run_id in valued] + unvalued
    # And from the last page, the previous links walk every page back, to the first
    for earlier in reversed(trail[:-1]):
        text = await page(client, path + pager_link(text, "previous"))
        assert ROW.findall(text) == ROW.findall(earlier)


async def test_heatmap_cells_and_marginals_are_the_configurations_means(big):
    client, experiment_id, runs = big
    text = await page(client, f"/experiments/{experiment_id}")
    means = config_means(runs)
    cells = re.findall(r'<g class="cell" data-run-id="(\d+)" data-status="(\w+)"[^>]*'
                       r'data-value="([^"]*)" data-runs="" data-n="(\d+)"', text)
    # Then every configuration is a cell (20 panels of 5 x 5), each with its mean and its n
    assert len(cells) == 500
    for run_id, status, value, n in cells:
        values = means.get(tuple(runs[int(run_id)][2].values()), [])
        assert int(n) == len(values)
        if values:
            assert float(value) == pytest.approx(statistics.fmean(values))
            assert runs[int(run_id)][1] == max(values)  # the cell links to its best run
        else:
            assert value == "" and status != "succeeded"
    # And each parameter value's marginal mean is the mean of its succeeded runs
    shown = re.findall(r'<span class="num effect-mean">([^<]*)</span>', text)
    expected = []
    for position, name in enumerate(GRID):
        for choice in GRID[name]:
            values = [value for config, held in means.items() if config[position] == choice
                      for value in held]
            expected.append(number(statistics.fmean(values)))
    assert shown == expected


async def test_the_page_draws_a_bounded_number_of_lines_and_counts_by_state(big):
    client, experiment_id, runs = big
    for path in (f"/experiments/{experiment_id}", f"/experiments/{experiment_id}/live"):
        text = await page(client, path)
        curves = re.findall(r'<polyline class="curve (\w+)"', text)
        assert 0 < len(curves) <= 26 and curves.count("best") == 1
        assert "of the" in re.search(r'id="curves-note">([^<]*)<', text).group(1)
        succeeded = sum(status == "succeeded" for status, _, _ in runs.values())
        assert len(re.findall(r'<polyline class="pc-line', text)) == 500 < succeeded
        counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', text))
        expected = Counter(status for status, _, _ in runs.values())
        assert {state: int(n) for state, n in counts.items()} == {
            state: expected.get(state, 0) for state in counts}
        assert len(ROW.findall(text)) == 100


async def test_a_state_shows_its_runs_only_and_a_wrong_cursor_is_a_422(big):
    client, experiment_id, runs = big
    text = await page(client, f"/experiments/{experiment_id}?status=failed")
    failed = sorted(run_id for run_id, (status, _, _) in runs.items() if status == "failed")
    assert [int(n) for n in ROW.findall(text)] == failed[:100]
    for query in ("after=nope", "status=done", "sort=accuracy&after=WyJpZCIsIDVd"):
        response = await client.get(f"/experiments/{experiment_id}?{query}")
        assert response.status == 422, query
