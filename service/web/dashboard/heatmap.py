"""Heatmaps of the objective over two parameters (one panel per combination of the others'
values; a single row for an experiment of one parameter). Any names: the axes are the two
parameters with the most values, categorical ones in the grid's order. Pure functions over the
experiment as the API shows it.

A cell is a grid point: with repeats, all of its runs, shown by their configuration's mean and
95% interval; with one run, that run. A cell notes its pruned runs and its reused results.

Only a space of value lists makes a grid: a random or TPE search over a range has a continuous
parameter, so no panels (the dashboard plots those searches instead: marginals.py)."""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, field
from typing import Any

from service.contract import ACTIVE_RUN_STATES
from service.sweeps.grid import config_key
from service.sweeps.statistics import MAXIMIZE
from service.web.dashboard.parameters import point, token, value_lists
from service.web.dashboard.scale import Scale, colour, mean_ci, param_text

MAX_PANELS = 24  # facet combinations drawn; choosing other axes shows the others
PAIRED = 5  # the page links every pair of axes among so many parameters (10 pairs)
STATUS_TEXT = {"failed": "✗ failed", "cancelled": "cancelled", "running": "running…",
               "queued": "queued", "pruned": "✂ pruned"}
PRUNED_MARK, REUSED_MARK = "✂", "↺"
# Its interval has no width, which is no certainty: its seeds showed no noise at all.
SAME_TEXT, SAME_TITLE = "seeds equal", "every seed gave the same value"


@dataclass
class Cell:
    status: str = "missing"
    value: float | None = None  # the run's objective value, or its configuration's mean
    accuracy: float | None = None  # the run's accuracy, or the mean of its runs'
    run_id: int | None = None  # the run the cell links to: its best-scoring, or its first
    best: bool = False
    score: float = 0.0  # where the value sits on the colour scale, 1 the best end
    run_ids: list[int] = field(default_factory=list)  # empty on a large experiment's page
    runs: int = 0  # how many runs the grid point has
    ci95: list[float] | None = None  # its configuration's 95% interval of the mean
    n: int = 0  # runs that succeeded
    ended: int = 0
    failed: int = 0
    pruned: int = 0
    reused: int = 0  # runs that took a known result instead of training
    same: bool = False  # two runs or more succeeded, all with the same value

    @property
    def repeated(self) -> bool:
        return self.runs > 1

    @property
    def fill(self) -> str:
        return colour(self.score) if self.status == "succeeded" else "#d9d9d9"

    @property
    def ink(self) -> str:
        """Text colour that stays readable on the cell's fill."""
        if self.status != "succeeded":
            return "#222"
        return "#000" if self.score >= 0.55 else "#fff"

    @property
    def text(self) -> str:
        if self.repeated and self.status == "running":
            return f"{self.ended}/{self.runs} done"
        if self.status == "succeeded" and self.value is not None:
            return mean_ci(self.value, self.ci95)
        return STATUS_TEXT.get(self.status, "")

    @property
    def detail(self) -> str:
        """The second line of a repeated cell: how many runs the number stands on."""
        if not self.repeated:
            return ""
        parts = [f"n={self.n}"] if self.n else []
        if self.same:
            parts.append(SAME_TEXT)
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.pruned:
            parts.append(f"{self.pruned} pruned")
        return " · ".join(parts)

    @property
    def marks(self) -> str:
        """The corner symbols: ✂ for pruned runs (with their number when repeated), ↺ for
        reused results. A single pruned run says so in its text already."""
        parts = []
        if self.pruned and (self.repeated or self.status != "pruned"):
            parts.append(PRUNED_MARK + (str(self.pruned) if self.repeated else ""))
        if self.reused:
            parts.append(REUSED_MARK)
        return " ".join(parts)

    @property
    def notes(self) -> str:
        """For the cell's title: ", 3 pruned, reused"."""
        parts = [f"{self.pruned} pruned"] if self.pruned and self.repeated else []
        if self.same:
            parts.append(SAME_TITLE)
        if self.reused:
            parts.append("reused" if not self.repeated else f"{self.reused} reused")
        return "".join(f", {part}" for part in parts)


@dataclass
class Panel:
    x: str
    y: str | None  # None: a single row (an experiment of one parameter)
    facets: dict[str, Any]  # the values of the parameters not on an axis, in the grid's order
    xs: list[Any]
    ys: list[Any]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    repeats: int = 1

    def cell(self, x_value: Any, y_value: Any) -> Cell:
        return self.cells.get((token(x_value), token(y_value)), Cell())

    @property
    def facet(self) -> str:
        """The names of the parameters fixed in this panel ("k", or "k · lr")."""
        return " · ".join(self.facets)

    @property
    def facet_value(self) -> str:
        return " · ".join(param_text(value) for value in self.facets.values())

    @property
    def facet_text(self) -> str:
        """"k = 1000 · lr = 0.1": what the panel's caption says."""
        return " · ".join(f"{name} = {param_text(value)}" for name, value in self.facets.items())


def by_size(grid: dict[str, list[Any]]) -> list[str]:
    """The parameters, those with the most values first (ties: the grid's order)."""
    order = list(grid)
    return sorted(order, key=lambda p: (-len(grid[p]), order.index(p)))


def axes(x: str | None, y: str | None,
         grid: dict[str, list[Any]]) -> tuple[str, str | None, list[str]]:
    """The two axes asked for, the fullest for any not asked for, and the facets left (in the
    grid's order). By default the two parameters with the most values, across then down in
    the grid's order. With one parameter, no y."""
    order = list(grid)
    ranked = by_size(grid)
    if len(order) == 1:
        return order[0], None, []
    if x not in grid and y not in grid:
        x, y = sorted(ranked[:2], key=order.index)
    x = x if x in grid else next(p for p in ranked if p != y)
    y = y if y in grid and y != x else next(p for p in ranked if p != x)
    return x, y, [p for p in order if p not in (x, y)]


def axis_pairs(experiment: dict[str, Any]) -> list[tuple[str, str]]:
    """The pairs of axes the page offers: every pair of the (at most PAIRED) parameters with
    the most values, each pair in the grid's order."""
    grid = value_lists(experiment)
    if grid is None:
        return []
    order = list(grid)
    chosen = sorted(by_size(grid)[:PAIRED], key=order.index)
    return list(itertools.combinations(chosen, 2))


def group_status(statuses: dict[str, int]) -> str:
    """One status for a grid point's runs (how many in each state): running while any is
    unfinished and some started."""
    unfinished = sum(number for status, number in statuses.items()
                     if status in ACTIVE_RUN_STATES)
    if unfinished:
        return "queued" if unfinished == sum(statuses.values()) and \
            not statuses.get("running") else "running"
    for status in ("succeeded", "failed", "pruned", "cancelled"):
        if statuses.get(status):
            return status
    return "missing"


@dataclass
class PointRuns:
    """What a cell and the marginals need of a grid point's runs: counts, not the runs. From
    the runs themselves (point_runs) or, for a large experiment, from aggregate queries
    (tallies.py)."""

    params: dict[str, Any]
    statuses: dict[str, int]  # how many runs in each state
    lead_run: int  # its best-scoring succeeded run (ties: the earlier), else its first
    has_best: bool  # the experiment's best run is one of them
    accuracy: float | None  # the mean accuracy of those that succeeded
    reused: int
    config: dict[str, Any] | None  # its configuration's statistics; None: none succeeded
    best_value: float | None  # the best value of those that succeeded
    run_ids: list[int] = field(default_factory=list)  # every run's, when read

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


def point_runs(runs: list[dict[str, Any]], config: dict[str, Any] | None, direction: str,
               best_run_id: int | None) -> PointRuns:
    """A grid point's summary from its runs (and its configuration: None, none succeeded)."""
    statuses: dict[str, int] = {}
    for run in runs:
        statuses[run["status"]] = statuses.get(run["status"], 0) + 1
    succeeded = [run for run in runs if run["status"] == "succeeded"]
    accuracies = [run["accuracy"] for run in succeeded if run["accuracy"] is not None]
    scored = [(value, run["id"]) for run in succeeded if (value := run["value"]) is not None]
    sign = 1 if direction == MAXIMIZE else -1
    best = max(scored, key=lambda pair: (sign * pair[0], -pair[1])) if scored else None
    ids = [run["id"] for run in runs]
    return PointRuns(runs[0]["params"], statuses, best[1] if best else runs[0]["id"],
                     best_run_id in ids, statistics.fmean(accuracies) if accuracies else None,
                     sum(run.get("reused_from") is not None for run in runs), config,
                     best[0] if best else None, ids)


def make_cell(summary: PointRuns, scale: Scale) -> Cell:
    """The cell of one grid point."""
    config, statuses = summary.config, summary.statuses
    value = config["mean"] if config else None
    return Cell(status=group_status(statuses), value=value, accuracy=summary.accuracy,
                run_id=summary.lead_run, best=summary.has_best, score=scale.score(value),
                run_ids=summary.run_ids, runs=summary.total,
                ci95=config["ci95"] if config else None, n=config["n"] if config else 0,
                ended=sum(number for status, number in statuses.items()
                          if status not in ACTIVE_RUN_STATES),
                failed=statuses.get("failed", 0), pruned=statuses.get("pruned", 0),
                reused=summary.reused, same=bool(config and config.get("no_variance")))


def points_from_runs(experiment: dict[str, Any]) -> list[PointRuns]:
    """Every grid point that has runs, from the experiment's runs (all of them inline)."""
    configs = {config_key(config["params"]): config
               for config in experiment["configurations"]}
    by_point: dict[str, list[dict[str, Any]]] = {}
    for run in experiment["runs"]:
        by_point.setdefault(config_key(run["params"]), []).append(run)
    best = experiment["best"]["run_id"] if experiment["best"] else None
    direction = experiment["objective"]["direction"]
    return [point_runs(runs, configs.get(key), direction, best)
            for key, runs in by_point.items()]


def panels(experiment: dict[str, Any], points: list[PointRuns], scale: Scale,
           x: str | None = None, y: str | None = None) -> tuple[list[Panel], int]:
    """One panel per combination of the facets' values (at most MAX_PANELS), and how many
    combinations there are; no panels when a parameter is a range."""
    grid = value_lists(experiment)
    if grid is None:
        return [], 0
    x, y, facets = axes(x, y, grid)
    order = [x, *([y] if y else []), *facets]
    # by the facets' values first: only the points of the panels drawn become cells
    by_facets: dict[tuple[str, ...], list[tuple[tuple[str, ...], PointRuns]]] = {}
    for summary in points:
        key = point(summary.params, order)
        by_facets.setdefault(key[2:] if y else key[1:], []).append((key, summary))
    combinations = list(itertools.product(*(grid[name] for name in facets)))
    result = []
    for values in combinations[:MAX_PANELS]:
        panel = Panel(x, y, dict(zip(facets, values, strict=True)), list(grid[x]),
                      list(grid[y]) if y else [None], repeats=experiment["repeats"])
        for key, summary in by_facets.get(tuple(token(value) for value in values), []):
            panel.cells[(key[0], key[1] if y else token(None))] = make_cell(summary, scale)
        result.append(panel)
    return result, len(combinations)
