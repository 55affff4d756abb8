"""The objective against each parameter, whatever its name: for a grid, a table of the mean and
best value per parameter value; for a random or TPE search, a scatter of each run that succeeded
(with the best so far over the finishing order). Pure functions over the API's JSON.

Numbers go on a numeric axis (a log one when the space says so, or when positive values span
more than LOG_SPAN); strings and booleans are evenly spaced categories in the grid's order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.sweeps.statistics import MAXIMIZE
from service.web.dashboard.charts import (
    BOTTOM,
    LEFT,
    LOG_SPAN,
    RIGHT,
    TOP,
    Y_TICK_PX,
    Axis,
    Chart,
    Dot,
    history_chart,
    make_axis,
)
from service.web.dashboard.heatmap import PointRuns
from service.web.dashboard.parameters import is_number, names, title, token, value_lists
from service.web.dashboard.scale import number, param_text


@dataclass(frozen=True)
class Effect:
    value: Any
    mean: float | None
    best: float | None
    succeeded: int
    total: int


def marginal_effects(experiment: dict[str, Any],
                     points: list[PointRuns]) -> dict[str, list[Effect]]:
    """For each parameter and value: mean and best objective value (best in the objective's
    direction) of the runs that succeeded, from the grid points' statistics (a mean over the
    runs is the points' means weighted by their runs). Empty when a parameter is a range."""
    pick = max if experiment["objective"]["direction"] == MAXIMIZE else min
    grid = value_lists(experiment)
    if grid is None:
        return {}
    # (parameter, value's token) -> [sum of values, runs succeeded, best, runs]
    sums: dict[tuple[str, str], list[Any]] = {}
    for summary in points:
        config = summary.config
        for param in grid:
            held = sums.setdefault((param, token(summary.params.get(param))),
                                   [0.0, 0, None, 0])
            held[3] += summary.total
            if config and summary.best_value is not None:
                held[0] += config["n"] * config["mean"]
                held[1] += config["n"]
                held[2] = summary.best_value if held[2] is None else \
                    pick(held[2], summary.best_value)
    effects: dict[str, list[Effect]] = {}
    for param, values in grid.items():
        effects[param] = []
        for value in values:
            total, n, best, runs = sums.get((param, token(value)), (0.0, 0, None, 0))
            effects[param].append(Effect(value, total / n if n else None, best, n, runs))
    return effects


def log_param(space: Any, values: list[float]) -> bool:
    """A numeric parameter goes on a log axis when its range says log, or (a list) when its
    values are all positive and span more than LOG_SPAN."""
    if isinstance(space, dict):
        return bool(space.get("log"))
    positive = [value for value in values if value > 0]
    return len(positive) == len(values) and bool(values) and \
        max(values) / min(values) > LOG_SPAN


def space_ends(space: Any) -> list[float]:
    """The ends of a numeric parameter's search space: the x axis shows all of it, not only
    what was sampled so far."""
    if isinstance(space, dict):
        return [float(space["low"]), float(space["high"])]
    values = [float(value) for value in space or [] if is_number(value)]
    return [min(values), max(values)] if values else []


def categorical(space: Any) -> bool:
    """A list of values that are not all numbers: strings, booleans, or a mix."""
    return isinstance(space, list) and not all(is_number(value) for value in space)


def param_axis(space: Any, taken: list[Any], start: float, end: float) -> Axis:
    """The x axis of a parameter: its categories in the grid's order, or a numeric axis over
    its whole space (whole-number ticks when every value and end is whole)."""
    if categorical(space):
        return Axis.categories([param_text(value) for value in space], start, end)
    xs = [float(value) for value in taken] + space_ends(space)
    return make_axis(xs, start, end, log_param(space, xs), whole_numbers(space, taken))


def whole_numbers(space: Any, taken: list[Any]) -> bool:
    """Whether a numeric parameter takes whole numbers only: its axis ticks no 1.5."""
    ends = [space["low"], space["high"]] if isinstance(space, dict) else list(space or [])
    return all(isinstance(value, int) for value in [*ends, *taken])


def x_of(axis: Axis, space: Any, value: Any) -> float:
    """Where a value sits along its parameter's axis (a category: its place in the grid)."""
    if axis.labels:
        tokens = [token(choice) for choice in space]
        return axis.at(tokens.index(token(value)))
    return axis.at(float(value))


def scatter_chart(param: str, runs: list[dict[str, Any]], space: Any, metric: str,
                  best_id: int | None, width: int = 300, height: int = 220) -> Chart | None:
    """The objective of each succeeded run against one parameter. None when no run succeeded."""
    scored = [(run["params"][param], value, run) for run in runs
              if run["status"] == "succeeded" and param in run["params"]
              and (value := run["value"]) is not None]
    if not scored:
        return None
    x = param_axis(space, [a for a, _, _ in scored], LEFT, width - RIGHT)
    y = make_axis([b for _, b, _ in scored], height - BOTTOM, TOP, per_tick=Y_TICK_PX)
    chart = Chart(width, height, x, y, title(param), metric,
                  f"{metric} of each run that succeeded against {title(param)}"
                  f"{' (log scale)' if x.log else ''}", name=f"scatter-{param}")
    # the best drawn last, so no other dot covers it
    for a, b, run in sorted(scored, key=lambda s: s[2]["id"] == best_id):
        kind = "best" if run["id"] == best_id else "value"
        chart.dots.append(Dot(x_of(x, space, a), y.at(b), kind,
                              f"run {run['id']}: {param}={param_text(a)}, "
                              f"{metric} {number(b)}", run["id"]))
    return chart


def search_charts(experiment: dict[str, Any], sample: str | None = None) -> dict[str, Any] | None:
    """A random or TPE search's scatter plots (one per parameter) and best-so-far history;
    None for a grid. `sample`: the runs are a sample, which the page says in these words."""
    if (experiment.get("search") or {}).get("strategy", "grid") == "grid":
        return None
    metric = experiment["objective"]["metric"]
    best_id = experiment["best"]["run_id"] if experiment["best"] else None
    scatters = [scatter_chart(p, experiment["runs"], experiment["grid"][p], metric, best_id)
                for p in names(experiment)]
    return {"scatters": [chart for chart in scatters if chart],
            "history": history_chart(experiment["runs"], metric,
                                     experiment["objective"]["direction"], best_id),
            "sample": sample}
