"""Heatmaps of the objective over two parameters (one panel per value of the third), and the
marginal effect of each parameter. Pure functions over the experiment as the API shows it.

A cell is a grid point: with repeats, all of its runs, shown by their configuration's mean and
95% interval; with one run, that run. A cell notes its pruned runs and its reused results.

Only a space of value lists makes a grid: a random or TPE search over a range has a continuous
parameter, so no panels and no marginal effects (the dashboard plots those searches instead)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from service.contract import ACTIVE_RUN_STATES
from service.sweeps.statistics import MAXIMIZE
from service.web.dashboard.scale import Scale, colour, mean_ci, objective_value

PARAMS = ("i", "j", "k")
PARAM_NAMES = {"i": "learning rate (i)", "j": "layers (j)", "k": "steps (k)"}
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
    run_ids: list[int] = field(default_factory=list)
    ci95: list[float] | None = None  # its configuration's 95% interval of the mean
    n: int = 0  # runs that succeeded
    ended: int = 0
    failed: int = 0
    pruned: int = 0
    reused: int = 0  # runs that took a known result instead of training
    same: bool = False  # two runs or more succeeded, all with the same value

    @property
    def repeated(self) -> bool:
        return len(self.run_ids) > 1

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
            return f"{self.ended}/{len(self.run_ids)} done"
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
    y: str
    facet: str | None
    facet_value: float | int | None
    xs: list[Any]
    ys: list[Any]
    cells: dict[tuple[Any, Any], Cell] = field(default_factory=dict)
    repeats: int = 1

    def cell(self, x_value: Any, y_value: Any) -> Cell:
        return self.cells.get((x_value, y_value), Cell())


def by_size(grid: dict[str, list[Any]]) -> list[str]:
    """The parameters, those with the most values first (ties: i, then j, then k)."""
    return sorted(PARAMS, key=lambda p: (-len(grid.get(p, [])), PARAMS.index(p)))


def axes(x: str | None, y: str | None,
         grid: dict[str, list[Any]] | None = None) -> tuple[str, str, str]:
    """The two axes asked for, the fullest for any not asked for, and the facet left.
    By default the two parameters with the most values, across then down in i, j, k order."""
    ranked = by_size(grid or {})
    if x not in PARAMS and y not in PARAMS:
        x, y = sorted(ranked[:2], key=PARAMS.index)
    x = x if x in PARAMS else next(p for p in ranked if p != y)
    y = y if y in PARAMS and y != x else next(p for p in ranked if p != x)
    facet = next(p for p in PARAMS if p not in (x, y))
    return x, y, facet


def _key(params: dict[str, Any]) -> tuple[Any, Any, Any]:
    return params["i"], params["j"], params["k"]


def group_status(statuses: list[str]) -> str:
    """One status for a grid point's runs: running while any is unfinished and some started."""
    unfinished = [status for status in statuses if status in ACTIVE_RUN_STATES]
    if unfinished:
        return "queued" if len(unfinished) == len(statuses) and "running" not in statuses \
            else "running"
    for status in ("succeeded", "failed", "pruned", "cancelled"):
        if status in statuses:
            return status
    return "missing"


def _lead_run(runs: list[dict[str, Any]], metric: str, direction: str) -> int:
    """The run a cell links to: its best-scoring succeeded run (ties: the earlier), else the
    first."""
    scored = [(value, run["id"]) for run in runs if run["status"] == "succeeded"
              and (value := objective_value(run, metric)) is not None]
    if not scored:
        return runs[0]["id"]
    sign = 1 if direction == MAXIMIZE else -1
    return max(scored, key=lambda pair: (sign * pair[0], -pair[1]))[1]


def make_cell(runs: list[dict[str, Any]], config: dict[str, Any] | None, scale: Scale,
              best_run_id: int | None) -> Cell:
    """The cell of one grid point from its runs and its configuration (None: none succeeded)."""
    statuses = [run["status"] for run in runs]
    accuracies = [run["accuracy"] for run in runs
                  if run["status"] == "succeeded" and run["accuracy"] is not None]
    value = config["mean"] if config else None
    ids = [run["id"] for run in runs]
    return Cell(status=group_status(statuses), value=value,
                accuracy=statistics.fmean(accuracies) if accuracies else None,
                run_id=_lead_run(runs, scale.metric, scale.direction),
                best=best_run_id in ids, score=scale.score(value), run_ids=ids,
                ci95=config["ci95"] if config else None, n=config["n"] if config else 0,
                ended=sum(status not in ACTIVE_RUN_STATES for status in statuses),
                failed=statuses.count("failed"), pruned=statuses.count("pruned"),
                reused=sum(run.get("reused_from") is not None for run in runs),
                same=bool(config and config.get("no_variance")))


def grid_cells(experiment: dict[str, Any], scale: Scale) -> dict[tuple[Any, Any, Any], Cell]:
    """Every grid point that has runs, as a cell."""
    configs = {_key(config["params"]): config for config in experiment["configurations"]}
    by_point: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
    for run in experiment["runs"]:
        by_point.setdefault(_key(run["params"]), []).append(run)
    best = experiment["best"]["run_id"] if experiment["best"] else None
    return {point: make_cell(runs, configs.get(point), scale, best)
            for point, runs in by_point.items()}


def value_lists(experiment: dict[str, Any]) -> dict[str, list[Any]] | None:
    """The experiment's values of each parameter when all are lists; None when one is a range
    (`{"low", "high", "log"}`: a random or TPE search's continuous parameter)."""
    grid = experiment["grid"]
    if all(isinstance(grid.get(param), list) for param in PARAMS):
        return grid
    return None


def panels(experiment: dict[str, Any], scale: Scale, x: str | None = None,
           y: str | None = None) -> list[Panel]:
    """One panel per value of the facet; none when a parameter is a range."""
    grid = value_lists(experiment)
    if grid is None:
        return []
    x, y, facet = axes(x, y, grid)
    cells = grid_cells(experiment, scale)
    result = []
    for facet_value in grid[facet]:
        panel = Panel(x, y, facet, facet_value, list(grid[x]), list(grid[y]),
                      repeats=experiment["repeats"])
        for point, cell in cells.items():
            params = dict(zip(PARAMS, point, strict=True))
            if params[facet] == facet_value:
                panel.cells[(params[x], params[y])] = cell
        result.append(panel)
    return result


@dataclass(frozen=True)
class Effect:
    value: Any
    mean: float | None
    best: float | None
    succeeded: int
    total: int


def marginal_effects(experiment: dict[str, Any]) -> dict[str, list[Effect]]:
    """For each parameter and value: mean and best objective value (best in the objective's
    direction) of the runs that succeeded. Empty when a parameter is a range."""
    metric, direction = experiment["objective"]["metric"], experiment["objective"]["direction"]
    pick = max if direction == MAXIMIZE else min
    effects: dict[str, list[Effect]] = {}
    grid = value_lists(experiment)
    if grid is None:
        return effects
    for param in PARAMS:
        rows = []
        for value in grid[param]:
            chosen = [run for run in experiment["runs"] if run["params"][param] == value]
            scores = [score for run in chosen if run["status"] == "succeeded"
                      and (score := objective_value(run, metric)) is not None]
            rows.append(Effect(value, statistics.fmean(scores) if scores else None,
                               pick(scores) if scores else None, len(scores), len(chosen)))
        effects[param] = rows
    return effects
