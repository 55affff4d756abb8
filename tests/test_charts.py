"""The dashboard's charts for sweeps that learn: the geometry charts.py computes (scales, ticks,
log axes, best so far, how pruned and best curves are drawn), and the pages that show it, from
real rows in a temporary database fetched through the app."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from service.web.dashboard.charts import (
    STYLES,
    Axis,
    best_so_far,
    history_chart,
    legend,
    linear_axis,
    log_axis,
    overlay_chart,
    run_curve_chart,
    staircase,
    thin,
    tick_text,
)
from service.web.dashboard.marginals import log_param, scatter_chart
from tests.api_support import make_model, upload_two_labels
from tests.helpers import run_params, settle

ACCENT, GREY = STYLES["best"].colour, STYLES["pruned"].colour


def run(run_id: int, status: str = "succeeded", value: float | None = None, **extra) -> dict:
    """A run as the API shows it, with what the charts read."""
    return {"id": run_id, "status": status, "value": value, "accuracy": None,
            "params": extra.pop("params", {"i": 0.1, "j": 1, "k": 5}), "reused_from": None,
            "pruned_at": None, "finished_at": extra.pop("finished_at", None), **extra}


def xy(points: str) -> list[tuple[float, float]]:
    return [tuple(map(float, pair.split(","))) for pair in points.split()]


# --- scales and ticks -------------------------------------------------------------------------

def test_a_linear_axis_widens_to_round_ticks_and_maps_its_ends_to_its_pixels():
    axis = linear_axis([0.05, 0.8], 200, 0)  # a y axis: its low end at the bottom pixel
    assert (axis.low, axis.high) == (0.0, pytest.approx(0.8))
    assert [t.text for t in axis.ticks()] == ["0", "0.2", "0.4", "0.6", "0.8"]
    assert (axis.at(0.0), axis.at(0.8), axis.at(0.4)) == (200, 0, 100)
    steps = linear_axis([100, 1000], 58, 586)
    assert [t.text for t in steps.ticks()] == ["0", "200", "400", "600", "800", "1000"]


def test_a_single_value_gets_room_and_counts_get_whole_ticks():
    one = linear_axis([0.5, 0.5], 0, 100)
    assert one.low < 0.5 < one.high and one.at(0.5) == 50
    runs = linear_axis([1, 3], 0, 400, whole=True)
    assert all(float(t.text).is_integer() for t in runs.ticks())


def test_a_log_axis_spans_whole_decades_with_a_tick_at_each():
    axis = log_axis([2e-4, 0.3], 0, 400)
    assert (axis.low, axis.high) == (pytest.approx(1e-4), pytest.approx(1.0))
    assert [t.text for t in axis.ticks()] == ["0.0001", "0.001", "0.01", "0.1", "1"]
    assert axis.at(1e-2) == 200  # the geometric middle is the middle
    assert [t.at for t in axis.ticks()] == [0, 100, 200, 300, 400]
    assert log_axis([0.5, 0.5], 0, 10).high == pytest.approx(1.0)  # at least one decade


def test_tick_labels_carry_no_float_noise():
    assert [tick_text(v) for v in (0, 0.6000000000000001, 1e-5, 2500, 10000, 1.25e7)] == [
        "0", "0.6", "1e-5", "2500", "10000", "1.25e7"]


def test_any_parameter_is_on_a_log_axis_when_its_range_is_log_or_its_values_span_widely():
    assert log_param({"low": 1e-4, "high": 1, "log": True}, [0.001, 0.002])
    assert not log_param({"low": 0.01, "high": 0.5, "log": False}, [0.01, 0.5])
    assert log_param([0.0001, 0.1], [0.0001, 0.1])
    assert not log_param([0.01, 0.5], [0.01, 0.5])
    assert log_param({"low": 1, "high": 100000, "log": True}, [1, 100000])
    assert log_param([1, 1000], [1, 1000])  # a whole-number parameter too
    assert not log_param([1, 8], [1, 8])
    assert not log_param([-1, 1000], [-1, 1000])  # a log axis cannot reach 0


def test_long_curves_are_thinned_keeping_both_ends():
    pairs = [(float(s), s / 1000) for s in range(1001)]
    kept = thin(pairs, limit=100)
    assert len(kept) <= 101 and kept[0] == pairs[0] and kept[-1] == pairs[-1]
    assert thin(pairs[:5]) == pairs[:5]


# --- best so far ---------------------------------------------------------------------------------

def finished(minute: int) -> str:
    return (datetime(2025, 1, 1) + timedelta(minutes=minute)).isoformat() + "Z"


HISTORY = [run(1, value=0.5, finished_at=finished(3)), run(2, value=0.7, finished_at=finished(1)),
           run(3, "pruned", finished_at=finished(2)), run(4, "failed", finished_at=finished(4)),
           run(5, value=0.9, finished_at=finished(5)), run(6, "running"),
           run(7, "cancelled", finished_at=finished(0))]


def test_best_so_far_follows_the_finishing_order_and_the_direction():
    # finishing order: 2 (0.7), 3 pruned, 1 (0.5), 4 failed, 5 (0.9); 6 and 7 spent nothing
    assert best_so_far(HISTORY, "loss", "maximize") == [(1, 0.7), (2, 0.7), (3, 0.7), (4, 0.7),
                                                        (5, 0.9)]
    assert best_so_far(HISTORY, "loss", "minimize") == [(1, 0.7), (2, 0.7), (3, 0.5), (4, 0.5),
                                                        (5, 0.5)]
    assert best_so_far([run(1, "failed", finished_at=finished(0))], "loss", "maximize") == []


def test_the_best_so_far_line_holds_its_value_until_it_improves():
    assert staircase([(1, 0.7), (2, 0.7), (3, 0.5)]) == [(1, 0.7), (2, 0.7), (3, 0.7),
                                                         (3, 0.5)]


def test_the_history_chart_dots_each_success_and_draws_the_best_so_far():
    chart = history_chart(HISTORY, "loss", "minimize", best_id=1)
    assert [dot.run_id for dot in chart.dots] == [2, 1, 5]  # in finishing order, no pruned
    assert [dot.kind for dot in chart.dots] == ["value", "best", "value"]
    line = xy(chart.lines[0].points)
    assert line[-1] == (chart.x.at(5), chart.y.at(0.5))  # the smallest, at the last run
    assert all(b >= a for (_, a), (_, b) in zip(line, line[1:], strict=False))  # never worse:
    # a smaller loss is lower on the chart, so its pixel y only grows
    assert history_chart([run(1, "running")], "loss", "minimize", None) is None


# --- curves: pruned grey, the best on top ------------------------------------------------------

CURVES = {1: {100: 0.2, 200: 0.4, 300: 0.6}, 2: {100: 0.05, 200: 0.05},
          3: {100: 0.1, 200: 0.3, 300: 0.5}, 4: {}}


def overlay_runs() -> list[dict]:
    return [run(1, value=0.6), run(2, "pruned", pruned_at={"step": 200, "value": 0.05}),
            run(3, value=0.5), run(4, "queued")]


def test_the_overlay_greys_pruned_runs_and_draws_the_best_thick_and_last():
    chart = overlay_chart(overlay_runs(), CURVES, best_id=1, metric="accuracy")
    kinds = [(line.run_id, line.kind, line.colour, line.width) for line in chart.lines]
    assert kinds == [(2, "pruned", GREY, 1.0), (3, "other", STYLES["other"].colour, 1.25),
                     (1, "best", ACCENT, 3.0)]
    assert STYLES["best"].width > STYLES["other"].width > STYLES["pruned"].width
    best = xy(chart.lines[-1].points)
    assert best[0] == (chart.x.at(100), chart.y.at(0.2)) and len(best) == 3
    assert chart.lines[0].title == "run 2 (pruned at step 200 (value 0.050))"
    (stop,) = chart.dots  # a small hollow dot where the pruned run stopped
    assert (stop.kind, stop.run_id, stop.x, stop.y) == ("pruned-end", 2, chart.x.at(200),
                                                        chart.y.at(0.05))
    assert [text for _, text in legend(chart)] == ["best run (run 1)", "other runs",
                                                   "pruned (stopped early)"]
    # every point is inside the plot
    for line in chart.lines:
        for a, b in xy(line.points):
            assert chart.left <= a <= chart.right and chart.top <= b <= chart.bottom


def test_no_overlay_without_points():
    assert overlay_chart(overlay_runs(), {4: {}}, best_id=1, metric="accuracy") is None


def test_a_pruned_runs_curve_marks_where_it_was_stopped():
    pruned = run(2, "pruned", pruned_at={"step": 200, "value": 0.05})
    curve = [{"step": 100, "value": 0.05}, {"step": 200, "value": 0.05}]
    chart = run_curve_chart(pruned, curve, "accuracy")
    (mark,) = chart.dots
    assert (mark.kind, mark.x, mark.y) == ("pruned-at", chart.x.at(200), chart.y.at(0.05))
    assert mark.title == "pruned at step 200 (value 0.050)"
    assert (chart.x_title, chart.y_title) == ("step", "accuracy")
    assert run_curve_chart(pruned, [], "accuracy") is None


def test_a_scatter_puts_each_success_at_its_parameter_the_best_last():
    runs = [run(1, value=0.3, params={"i": 0.001, "j": 1, "k": 5}),
            run(2, value=0.9, params={"i": 0.1, "j": 2, "k": 5}),
            run(3, "pruned", params={"i": 0.01, "j": 3, "k": 5}),
            run(4, value=0.5, params={"i": 1.0, "j": 4, "k": 5})]
    space = {"low": 1e-4, "high": 1.0, "log": True}
    chart = scatter_chart("i", runs, space, "accuracy", best_id=2)
    assert chart.x.log and [dot.run_id for dot in chart.dots] == [1, 4, 2]
    assert chart.dots[-1].kind == "best" and chart.dots[-1].x == chart.x.at(0.1)
    linear = scatter_chart("j", runs, [1, 2, 3, 4], "accuracy", best_id=2)
    assert not linear.x.log and linear.x_title == "layers (j)"
    assert scatter_chart("i", [runs[2]], space, "accuracy", None) is None


def test_axis_pixels_of_a_log_axis_follow_the_decades():
    axis = Axis(0.001, 1.0, 0, 300, log=True)
    assert [axis.at(v) for v in (0.001, 0.01, 0.1, 1.0)] == [0, 100, 200, 300]


# --- the heatmap and the progress on searches, pruned and reused runs ---------------------------

def test_a_space_with_a_range_has_no_heatmap_and_no_marginal_effects():
    from service.web.dashboard.heatmap import panels
    from service.web.dashboard.marginals import marginal_effects
    from service.web.dashboard.scale import Scale

    experiment = {"grid": {"i": {"low": 1e-4, "high": 1.0, "log": True}, "j": [1, 2],
                           "k": {"low": 5, "high": 50, "log": False}},
                  "objective": {"metric": "accuracy", "direction": "maximize"},
                  "runs": [run(1, value=0.5)], "configurations": [], "best": None,
                  "repeats": 1}
    assert panels(experiment, [], Scale()) == ([], 0) and marginal_effects(experiment, []) == {}


def test_a_cell_marks_its_pruned_and_reused_runs():
    from service.web.dashboard.heatmap import make_cell, point_runs
    from service.web.dashboard.scale import Scale

    def cell(runs: list[dict], config: dict | None):
        return make_cell(point_runs(runs, config, "maximize", None), Scale())

    alone = cell([run(1, "pruned")], None)
    assert (alone.status, alone.text, alone.marks, alone.notes) == ("pruned", "✂ pruned", "", "")
    reused = cell([run(2, value=0.8, reused_from=1)], {"n": 1, "mean": 0.8, "ci95": None})
    assert (reused.marks, reused.notes) == ("↺", ", reused")
    repeated = cell([run(3, value=0.8), run(4, "pruned"), run(5, "pruned")],
                    {"n": 1, "mean": 0.8, "ci95": None})
    assert (repeated.status, repeated.detail) == ("succeeded", "n=1 · 2 pruned")
    assert (repeated.marks, repeated.notes) == ("✂2", ", 2 pruned")


def test_progress_counts_pruned_runs_as_ended():
    from service.web.dashboard.data import _progress

    counts = {"queued": 1, "running": 0, "succeeded": 2, "failed": 0, "cancelled": 0,
              "pruned": 3}
    progress = _progress({"counts": counts, "runs": [], "status": "running"})
    assert (progress["ended"], progress["total"], progress["percent"]) == (5, 6, 83)


# --- the pages, from real rows --------------------------------------------------------------------

async def created(client, body: dict) -> dict:
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    response = await client.post(f"/api/v1/models/{model_id}/experiments",
                                  json={**body, "start": False})
    assert response.status == 201, await response.text()
    return await response.json()


def polylines(html: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
            for tag in re.findall(r"<polyline ([^>]*)>", html)]


def x_ticks(svg: str) -> list[str]:
    return re.findall(r'<text class="axis" x="[^"]*" y="[^"]*">([^<]+)</text>', svg)


def svg_of(html: str, name: str) -> str:
    return re.search(rf'<figure class="chart" data-chart="{name}">(.*?)</figure>', html,
                     re.S).group(1)


async def test_an_experiment_with_curves_pruned_and_reused_runs(client, db):
    # Given a finished sweep of four runs: the best, a pruned one, one reused, and one more
    experiment = await created(client, {"grid": {"i": [0.1, 0.2], "j": [1, 2], "k": [5]},
                                        "early_stopping": {"rule": "median", "min_step": 100}})
    rising = {100: 0.3, 200: 0.6, 300: 0.9}
    ids = settle(experiment["id"], {
        0: {"value": 0.9, "accuracy": 0.9},
        1: {"status": "pruned", "pruned_step": 200, "pruned_value": 0.05},
        2: {"value": 0.5, "accuracy": 0.5, "reused_from": 1},
        3: {"value": 0.7, "accuracy": 0.7}},
        best=0, curves={0: rising, 1: {100: 0.05, 200: 0.05}, 3: {100: 0.2, 200: 0.7}})
    assert ids[0] == 1  # the run the third one reused
    # When its page is opened
    page = await client.get(f"/experiments/{experiment['id']}")
    html = await page.text()
    assert page.status == 200
    # Then the overlay draws the pruned curve grey and thin, the best thick in the accent, last
    lines = polylines(svg_of(html, "overlay"))
    assert [(line["data-run-id"], line["class"]) for line in lines] == [
        (str(ids[1]), "curve pruned"), (str(ids[3]), "curve other"), (str(ids[0]), "curve best")]
    assert (lines[0]["stroke"], lines[0]["stroke-width"]) == (GREY, "1.0")
    assert (lines[-1]["stroke"], lines[-1]["stroke-width"]) == (ACCENT, "3.0")
    assert f"best run (run {ids[0]})" in html and "pruned (stopped early)" in html
    assert re.search(r'id="curves-h">Learning curves: accuracy by step<', html)
    # And the heatmap marks the pruned and the reused cells, in their titles too
    pruned_cell = re.search(rf'<g class="cell" data-run-id="{ids[1]}"[^>]*>\s*<title>([^<]*)',
                            html)
    assert 'data-pruned="1"' in pruned_cell.group(0) and "✂ pruned" in pruned_cell.group(1)
    reused_cell = re.search(rf'<g class="cell" data-run-id="{ids[2]}".*?</g>', html, re.S)
    assert 'data-reused="1"' in reused_cell.group(0)
    assert re.search(r"<title>[^<]*, reused</title>", reused_cell.group(0))
    assert 'class="mark" aria-hidden="true">↺</text>' in reused_cell.group(0)
    # And the runs table: a pruned badge, a reused marker linking to its source, all ended
    assert 'title="stopped early by the pruner: pruned at step 200 (value 0.050)">pruned' in html
    assert 'href="/runs/1" title="its result was reused from run 1"' in html
    assert "4 of 4 runs ended" in html and 'data-count="pruned">1<' in html
    # When the pruned run's page is opened, then its curve marks where it was stopped
    pruned = await (await client.get(f"/runs/{ids[1]}")).text()
    assert 'id="run-status">pruned<' in pruned
    assert '<span id="run-pruned">pruned at step 200 (value 0.050)</span>' in pruned
    curve = svg_of(pruned, "run-curve")
    assert re.search(r'<circle class="dot pruned-at"', curve)
    assert "<title>pruned at step 200 (value 0.050)</title>" in curve
    assert 'class="axis-title" transform' in curve and ">accuracy</text>" in curve
    # And the reused run's page links to the run it took its result from, showing that curve
    reused = await (await client.get(f"/runs/{ids[2]}")).text()
    assert 'id="run-reused">reused from <a href="/runs/1">run 1</a>' in reused
    assert f"the curve of run {ids[0]}, whose result this run reused" in reused
    # And a run with a curve of its own draws it, with numbered ticks
    best = svg_of(await (await client.get(f"/runs/{ids[0]}")).text(), "run-curve")
    assert len(xy(polylines(best)[0]["points"])) == 3
    assert x_ticks(best) == ["100", "150", "200", "250", "300"]


async def test_an_experiment_without_points_has_no_curves(client, db):
    experiment = await created(client, {"grid": {"i": [0.1], "j": [1], "k": [5]}})
    settle(experiment["id"], {0: {"value": 0.5, "accuracy": 0.5}}, best=0, curves={})
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    assert 'data-chart="overlay"' not in html and 'id="curves-h"' not in html
    run_page = await (await client.get(f"/runs/{experiment['runs'][0]['id']}")).text()
    assert 'id="curve-h"' not in run_page and "pruned" not in run_page


SPACE = {"i": {"low": 1e-4, "high": 1.0, "log": True}, "j": [1, 2, 4],
         "k": {"low": 100, "high": 9000}}


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
async def test_a_random_search_shows_its_plots_instead_of_a_heatmap(client, db, direction):
    # Given a finished random search of six configurations: four succeeded, one pruned, one
    # failed, the best the largest loss when maximised and the smallest when minimised
    body = {"search": {"strategy": "random", "runs": 6, "seed": 3}, "grid": SPACE,
            "objective": {"metric": "loss", "direction": direction}}
    experiment = await created(client, body)
    values = {0: 0.4, 1: 0.8, 3: 0.2, 5: 0.6}
    best = 1 if direction == "maximize" else 3
    ids = settle(experiment["id"], {**{n: {"value": v} for n, v in values.items()},
                                    2: {"status": "pruned", "pruned_step": 3,
                                        "pruned_value": 9.0},
                                    4: {"status": "failed", "error": "boom"}},
                 best=best, curves={})
    # When its page is opened
    page = await client.get(f"/experiments/{experiment['id']}")
    html = await page.text()
    assert page.status == 200
    # Then there is no heatmap and no marginal effects table, but a scatter per parameter
    assert '<g class="cell"' not in html and 'id="effects-h"' not in html
    assert 'id="search-h">Random search: loss of each configuration' in html
    for param in ("i", "j", "k"):
        scatter = svg_of(html, f"scatter-{param}")
        dots = re.findall(r'<circle class="dot (\w+)" data-run-id="(\d+)"', scatter)
        assert sorted(int(run_id) for _, run_id in dots) == sorted(ids[n] for n in values)
        assert [int(run_id) for kind, run_id in dots if kind == "best"] == [ids[best]]
    # And i is on a log axis (its range is log): its ticks are decades
    assert x_ticks(svg_of(html, "scatter-i")) == ["0.0001", "0.001", "0.01", "0.1", "1"]
    assert "(log scale)" in svg_of(html, "scatter-i") and "(log scale)" not in svg_of(
        html, "scatter-k")
    # And the best-so-far line ends at the best value, over the five runs that spent budget
    history = svg_of(html, "history")
    assert len(re.findall(r'<circle class="dot', history)) == 4
    line = xy(polylines(history)[0]["points"])
    best_y = float(re.search(r'<circle class="dot best"[^>]* cy="([\d.]+)"', history).group(1))
    assert line[-1][1] == best_y and line[-1][0] == max(x for x, _ in line)
    assert len(re.findall(r'class="axis end"', history)) >= 3  # numbered value ticks
    # And the runs table numbers each configuration's trial
    assert '<a href="?sort=trial">Trial</a>' in html
    assert re.findall(r'<td class="num" data-label="Trial" data-trial>(\d+)</td>', html) == [str(n)
                                                                           for n in range(6)]


async def test_a_search_that_has_not_run_yet_says_so(client, db):
    experiment = await created(client, {"search": {"strategy": "tpe", "runs": 8, "parallel": 2,
                                                   "seed": 1}, "grid": SPACE})
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    assert 'id="search-h">TPE search' in html and "2 at a time" in html
    assert 'id="search-empty">No run has succeeded yet.' in html
    assert 'data-chart="history"' not in html and '<g class="cell"' not in html
    live = await client.get(f"/experiments/{experiment['id']}/live?sort=trial&dir=desc")
    assert live.status == 200


# --- numbers: parameters, integer axes, the legend, intervals ------------------------------------

def test_integer_axes_tick_only_whole_numbers():
    # Given runs over j in 1..2 (a whole-number range) with curves over steps 1..4
    runs = [run(1, value=0.3, params={"i": 0.1, "j": 1, "k": 5}),
            run(2, value=0.5, params={"i": 0.1, "j": 2, "k": 7})]
    scatter = scatter_chart("j", runs, {"low": 1, "high": 2, "log": False}, "loss", 2)
    curve = run_curve_chart(run(1), [{"step": s, "value": 1 / s} for s in (1, 2, 3, 4)], "loss")
    overlay = overlay_chart(runs, {1: {1: 0.5, 2: 0.4, 3: 0.3}, 2: {1: 0.6, 4: 0.2}}, 2, "loss")
    # Then no tick of a parameter of whole numbers or of a step falls between two of them
    for axis in (scatter.x, curve.x, overlay.x):
        assert all(float(tick.text).is_integer() for tick in axis.ticks()), axis.ticks()
    assert [t.text for t in curve.x.ticks()] == ["1", "2", "3", "4"]
    assert [t.text for t in scatter.x.ticks()] == ["1", "2"]


def test_the_best_so_far_axis_ends_at_the_last_run():
    # Given 16 runs that finished, one after another
    runs = [run(n, value=1 / n, finished_at=finished(n)) for n in range(1, 17)]
    chart = history_chart(runs, "loss", "minimize", best_id=16)
    # Then the runs axis goes from the first run to the 16th, not on to 20
    assert (chart.x.low, chart.x.high) == (1, 16)
    assert [t.text for t in chart.x.ticks()] == ["1", "5", "10", "15"]
    assert chart.dots[-1].x == chart.right  # the last run at the axis's end
    # And a single run or a few get whole ticks around them
    assert [t.text for t in history_chart(runs[:1], "loss", "minimize", 1).x.ticks()] == [
        "0", "1", "2"]
    assert [t.text for t in history_chart(runs[:3], "loss", "minimize", 3).x.ticks()] == [
        "1", "2", "3"]


async def test_a_parameter_drawn_from_a_range_shows_four_digits_its_exact_value_a_title(
        client, db):
    from service.core.tables import Run

    # Given a random search whose best run drew i = 0.0028760196660332984
    exact = 0.0028760196660332984
    experiment = await created(client, {"search": {"strategy": "random", "runs": 3, "seed": 1},
                                        "grid": SPACE})
    first = experiment["runs"][0]["id"]
    Run.update(**run_params(exact, 2, 300)).where(Run.id == first).execute()
    settle(experiment["id"], {0: {"value": 0.9}, 1: {"value": 0.5}, 2: {"value": 0.4}},
           best=0, curves={})
    # When its page and the best run's page are opened
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    run_page = await (await client.get(f"/runs/{first}")).text()
    # Then i reads 0.002876, with the exact value as the title, in the runs table and the best
    assert (f'<td class="num" data-label="i"><span title="{exact}">0.002876</span></td>'
            in html)
    exact_params = f"i={exact} · j=2 · k=300"
    assert f'<span title="{exact_params}">i=0.002876 · j=2 · k=300</span>' in html
    assert f'<dd><span title="{exact_params}">i=0.002876 · j=2 · k=300</span></dd>' in run_page
    # And nowhere else are all its digits shown: only in titles (the scatter's dot says 0.002876)
    for page in (html, run_page):
        assert str(exact) not in re.sub(r'title="[^"]*"', "", page)
    assert f"<title>run {first}: i=0.002876, accuracy 0.900</title>" in html
    # And a value that four digits hold whole has no title
    assert '<td class="num" data-label="j">2</td>' in html
    # And the API keeps the exact value
    shown = await (await client.get(f"/api/v1/runs/{first}")).json()
    assert shown["params"]["i"] == exact


def legend_texts(html: str) -> list[tuple[str, str, str]]:
    """(x, class, text) of each label of the heatmap's colour legend."""
    svg = re.search(r'<svg class="legend".*?</svg>', html, re.S).group(0)
    return re.findall(r'<text x="([\d.]+)" y="28" class="([\w ]+)">([^<]*)</text>', svg)


async def test_the_colour_legend_keeps_its_end_labels_inside_the_picture(client, db):
    # Given a minimised loss whose best mean is 0.05056
    experiment = await created(client, {"grid": {"i": [0.1, 0.2], "j": [1], "k": [5]},
                                        "objective": {"metric": "loss",
                                                      "direction": "minimize"}})
    settle(experiment["id"], {0: {"value": 0.9}, 1: {"value": 0.05056}}, best=1, curves={})
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    # Then its labels start at the bar's left end and end at its right end: centred on the
    # ends, the left one ran out of the picture ("05056")
    assert legend_texts(html) == [("10", "axis start", "0.9"), ("110", "axis", "0.4753"),
                                  ("210", "axis end", "0.05056"), ("304", "axis", "failed")]
    assert 'class="value">0.051 ★</text>' in html


async def test_an_interval_below_zero_is_written_with_plus_minus_everywhere(client, db):
    # Given a loss repeated three times whose best configuration's interval reaches below 0
    experiment = await created(client, {"grid": {"i": [0.1, 0.2], "j": [1], "k": [5]},
                                        "repeats": 3, "objective": {"metric": "loss",
                                                                    "direction": "minimize"}})
    losses = [0.01, 0.02, 0.2, 0.5, 0.6, 0.7]  # runs in id order: i=0.1 seeds 0-2, then i=0.2
    settle(experiment["id"], {n: {"value": v} for n, v in enumerate(losses)}, best=0,
           curves={})
    view = await (await client.get(f"/api/v1/experiments/{experiment['id']}")).json()
    best = view["configurations"][0]
    assert best["ci95"][0] < 0
    text = f"{best['mean']:.3f} ± {(best['ci95'][1] - best['ci95'][0]) / 2:.3f}"
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    # Then the cell, the configurations table and the best line write it as mean ± half-width,
    # and each says what the ± is
    assert f'class="value">{text} ★</text>' in html
    assert f'<td class="num config-mean">{text}</td>' in html
    assert f'<strong id="experiment-best">{text}</strong> (mean ± 95% CI) over 3 runs' in html
    assert re.search(rf"<title>[^<]*loss {re.escape(text)} \(mean ± 95% CI\)", html)
    assert "mean loss ± 95% CI</th>" in html
    assert re.search(r'id="ci-note">± is the half-width of the mean\'s 95% confidence '
                     r"interval", html)
    assert str(round(best["ci95"][0], 3)) not in html  # the low end is never written alone


async def test_on_a_phone_every_value_of_the_runs_table_is_labelled(client, db):
    # Given a finished random search of a loss
    experiment = await created(client, {"search": {"strategy": "random", "runs": 2, "seed": 1},
                                        "grid": SPACE, "objective": {"metric": "loss",
                                                                     "direction": "minimize"}})
    settle(experiment["id"], {0: {"value": 0.9}, 1: {"value": 0.5}}, best=1, curves={})
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    # Then each run's cells carry the label a phone shows beside them (a card per run)
    table = re.search(r'<table class="runs">.*?</table>', html, re.S).group(0)
    for row in re.findall(r"<tr (?:class=\"best\" )?data-run-id.*?</tr>", table, re.S):
        labels = re.findall(r'<td [^>]*data-label="([^"]+)"', row)
        assert labels == ["Run", "Trial", "i", "j", "k", "Status", "loss", "Accuracy",
                          "Duration", "Attempts"]


async def test_grid_values_read_four_digits_on_the_heatmap_and_the_effects(client, db):
    # Given a grid whose learning rates were typed with seven digits
    experiment = await created(client, {"grid": {"i": [0.0050561, 0.0123456], "j": [1],
                                                 "k": [5]}})
    settle(experiment["id"], {0: {"value": 0.5, "accuracy": 0.5},
                              1: {"value": 0.7, "accuracy": 0.7}}, best=1, curves={})
    html = await (await client.get(f"/experiments/{experiment['id']}")).text()
    # Then the heatmap's axis and the marginal effects show four, the typed value as a tooltip
    assert re.findall(r'class="axis">([^<]*)<title>([^<]*)</title></text>', html) == [
        ("0.005056", "0.0050561"), ("0.01235", "0.0123456")]
    assert '<th scope="row"><span title="0.0050561">0.005056</span></th>' in html
    assert '<th scope="row">1</th>' in html and "<figcaption>k = 5</figcaption>" in html
