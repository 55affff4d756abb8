"""Heatmaps of accuracy over two parameters (one panel per value of the third), and the
marginal effect of each parameter. Pure functions over run dicts as the API shows them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

PARAMS = ("i", "j", "k")
PARAM_NAMES = {"i": "learning rate (i)", "j": "layers (j)", "k": "steps (k)"}
# viridis, sampled: readable for colour-blind eyes and in greyscale
STOPS = [(0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)),
         (0.75, (94, 201, 98)), (1.0, (253, 231, 37))]


@dataclass
class Cell:
    status: str = "missing"
    accuracy: float | None = None
    run_id: int | None = None
    best: bool = False

    @property
    def fill(self) -> str:
        return colour(self.accuracy) if self.status == "succeeded" else "#d9d9d9"

    @property
    def ink(self) -> str:
        """Text colour that stays readable on the cell's fill."""
        if self.status != "succeeded":
            return "#222"
        return "#000" if (self.accuracy or 0.0) >= 0.55 else "#fff"

    @property
    def text(self) -> str:
        if self.status == "succeeded" and self.accuracy is not None:
            return f"{self.accuracy:.3f}"
        return {"failed": "✗ failed", "cancelled": "cancelled", "running": "running…",
                "queued": "queued"}.get(self.status, "")


@dataclass
class Panel:
    x: str
    y: str
    facet: str | None
    facet_value: float | int | None
    xs: list[Any]
    ys: list[Any]
    cells: dict[tuple[Any, Any], Cell] = field(default_factory=dict)

    def cell(self, x_value: Any, y_value: Any) -> Cell:
        return self.cells.get((x_value, y_value), Cell())


def colour(accuracy: float | None) -> str:
    value = min(1.0, max(0.0, accuracy or 0.0))
    for (low, low_rgb), (high, high_rgb) in zip(STOPS, STOPS[1:], strict=False):
        if value <= high:
            share = (value - low) / (high - low)
            rgb = [round(a + (b - a) * share) for a, b in zip(low_rgb, high_rgb, strict=True)]
            return "#{:02x}{:02x}{:02x}".format(*rgb)
    return "#{:02x}{:02x}{:02x}".format(*STOPS[-1][1])


def legend_stops() -> list[tuple[int, str]]:
    return [(round(offset * 100), colour(offset)) for offset, _ in STOPS]


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


def panels(runs: list[dict[str, Any]], grid: dict[str, list[Any]], best_run_id: int | None,
           x: str | None = None, y: str | None = None) -> list[Panel]:
    x, y, facet = axes(x, y, grid)
    result = []
    for facet_value in grid[facet]:
        panel = Panel(x, y, facet, facet_value, list(grid[x]), list(grid[y]))
        for run in runs:
            params = run["params"]
            if params[facet] == facet_value:
                panel.cells[(params[x], params[y])] = Cell(
                    run["status"], run["accuracy"], run["id"], run["id"] == best_run_id)
        result.append(panel)
    return result


@dataclass(frozen=True)
class Effect:
    value: Any
    mean: float | None
    best: float | None
    succeeded: int
    total: int


def marginal_effects(runs: list[dict[str, Any]],
                     grid: dict[str, list[Any]]) -> dict[str, list[Effect]]:
    """For each parameter and value: mean and best accuracy of the runs that succeeded."""
    effects: dict[str, list[Effect]] = {}
    for param in PARAMS:
        rows = []
        for value in grid[param]:
            chosen = [run for run in runs if run["params"][param] == value]
            scores = [run["accuracy"] for run in chosen if run["status"] == "succeeded"]
            rows.append(Effect(value, statistics.fmean(scores) if scores else None,
                               max(scores) if scores else None, len(scores), len(chosen)))
        effects[param] = rows
    return effects
