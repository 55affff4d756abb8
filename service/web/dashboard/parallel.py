"""A parallel-coordinates chart of an experiment of three or more parameters: one vertical axis
per parameter (in the grid's order) and one for the objective, one line per run that succeeded,
coloured by its objective value on the experiment's colour scale (better is yellow).

At most MAX_LINES lines: past that, the best BEST_KEPT and an even sample of the others, and the
caption says so (more lines only add bytes to a page polled every 1.5 s, and ink to a picture
that is already solid)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.sweeps.statistics import MAXIMIZE
from service.web.dashboard.charts import Y_TICK_PX, Axis, Tick, make_axis
from service.web.dashboard.marginals import (
    categorical,
    log_param,
    space_ends,
    whole_numbers,
    x_of,
)
from service.web.dashboard.parameters import is_number, names
from service.web.dashboard.scale import colour, number, param_text, scale_of

MIN_PARAMS = 3  # with two, the heatmap shows every configuration already
MAX_LINES, BEST_KEPT = 500, 100
GAP, SIDE, TOP, BOTTOM, HEIGHT = 120, 70, 34, 24, 320


@dataclass(frozen=True)
class Column:
    name: str
    x: float
    axis: Axis
    ticks: list[Tick]


@dataclass(frozen=True)
class Trace:
    points: str  # "x,y x,y ...", for <polyline points>
    colour: str
    width: float
    title: str
    run_id: int
    best: bool


@dataclass
class Parallel:
    width: int
    height: int
    top: float
    bottom: float
    columns: list[Column]
    caption: str
    label: str
    traces: list[Trace] = field(default_factory=list)


def kept(scored: list[tuple[float, dict[str, Any]]], direction: str) -> list[tuple[float, Any]]:
    """All runs when they are few; else the best BEST_KEPT and an even sample of the others,
    MAX_LINES in all. Drawn worst first, so the best lie on top."""
    sign = -1 if direction == MAXIMIZE else 1
    ranked = sorted(scored, key=lambda pair: (sign * pair[0], pair[1]["id"]))
    if len(ranked) > MAX_LINES:
        rest = ranked[BEST_KEPT:]
        every = len(rest) / (MAX_LINES - BEST_KEPT)
        ranked = ranked[:BEST_KEPT] + [rest[int(n * every)]
                                       for n in range(MAX_LINES - BEST_KEPT)]
    return ranked[::-1]


def column_axis(space: Any, taken: list[Any], bottom: float, top: float) -> Axis:
    """A parameter's vertical axis: its categories in the grid's order, or its numbers over
    the whole space (log when the space says so or the values span widely)."""
    if categorical(space):
        return Axis.categories([param_text(value) for value in space], bottom, top)
    values = [float(value) for value in taken if is_number(value)] + space_ends(space)
    return make_axis(values, bottom, top, log_param(space, values),
                     whole_numbers(space, taken), per_tick=Y_TICK_PX)


def caption(total: int, shown: int) -> str:
    if total == shown:
        return f"Every run that succeeded ({total}), one line each."
    return (f"{shown} of the {total} runs that succeeded: the best {BEST_KEPT} and "
            f"{shown - BEST_KEPT} of the others, evenly sampled.")


def parallel_chart(experiment: dict[str, Any], succeeded: int | None = None) -> Parallel | None:
    """None with fewer than three parameters, or before any run succeeded. `succeeded`: the
    experiment's runs are a sample (already chosen by `kept`) of so many that succeeded."""
    params = names(experiment)
    metric = experiment["objective"]["metric"]
    direction = experiment["objective"]["direction"]
    scored = [(value, run) for run in experiment["runs"] if run["status"] == "succeeded"
              and (value := run["value"]) is not None]
    if len(params) < MIN_PARAMS or not scored:
        return None
    chosen = kept(scored, direction)
    bottom, top = HEIGHT - BOTTOM, TOP
    grid = experiment["grid"]
    columns = []
    for n, name in enumerate(params):
        axis = column_axis(grid[name], [run["params"].get(name) for _, run in chosen],
                           bottom, top)
        columns.append(Column(name, SIDE + n * GAP, axis, axis.ticks()))
    value_axis = make_axis([value for value, _ in chosen], bottom, top, per_tick=Y_TICK_PX)
    columns.append(Column(metric, SIDE + len(params) * GAP, value_axis, value_axis.ticks()))
    chart = Parallel(2 * SIDE + len(params) * GAP, HEIGHT, top, bottom, columns,
                     caption(succeeded or len(scored), len(chosen)),
                     f"{metric} of each run that succeeded, with its {len(params)} parameters")
    scale = scale_of(experiment)
    best_id = experiment["best"]["run_id"] if experiment["best"] else None
    for value, run in chosen:
        ys = [x_of(column.axis, grid[column.name], run["params"].get(column.name))
              for column in columns[:-1]] + [value_axis.at(value)]
        shown = ", ".join(f"{name}={param_text(run['params'].get(name))}" for name in params)
        chart.traces.append(Trace(
            " ".join(f"{column.x},{y}" for column, y in zip(columns, ys, strict=True)),
            colour(scale.score(value)), 3.0 if run["id"] == best_id else 1.25,
            f"run {run['id']}: {shown}, {metric} {number(value)}", run["id"],
            run["id"] == best_id))
    return chart
