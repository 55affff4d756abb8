"""The parameter grid of an experiment: validated, then expanded into grid points."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from service.core.errors import Invalid

DEFAULT_GRID: dict[str, list[float | int]] = {
    "i": [0.001, 0.01, 0.1],
    "j": [1, 2, 4],
    "k": [1000, 2000, 4000],
}
MAX_VALUES_PER_KEY = 1000


@dataclass(frozen=True, order=True)
class GridPoint:
    i: float
    j: int
    k: int

    def as_dict(self) -> dict[str, float | int]:
        return {"i": self.i, "j": self.j, "k": self.k}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_i(value: Any, field: str = "grid.i") -> float:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise Invalid(f"{field}: {value!r} is not a finite number > 0", field=field)
    return float(value)


def check_whole(key: str, value: Any) -> int:
    whole = _is_number(value) and math.isfinite(value) and float(value).is_integer()
    if not whole or value < 1:
        raise Invalid(f"grid.{key}: {value!r} is not a whole number >= 1", field=f"grid.{key}")
    if value > 10**9:
        raise Invalid(f"grid.{key}: {value!r} is larger than 10^9", field=f"grid.{key}")
    return int(value)


def _values(grid: dict[str, Any], key: str) -> list[Any]:
    values = grid.get(key, DEFAULT_GRID[key])
    if not isinstance(values, list) or not values:
        raise Invalid(f"grid.{key} must be a non-empty list of numbers", field=f"grid.{key}")
    if len(values) > MAX_VALUES_PER_KEY:
        raise Invalid(f"grid.{key} has more than {MAX_VALUES_PER_KEY} values", field=f"grid.{key}")
    return values


def grid_object(grid: Any) -> dict[str, Any]:
    """The `grid` field as an object of known keys (absent: empty), or raise `Invalid`."""
    if grid is None:
        return {}
    if not isinstance(grid, dict):
        raise Invalid("grid must be an object with keys i, j, k", field="grid")
    unknown = sorted(set(grid) - set(DEFAULT_GRID))
    if unknown:
        raise Invalid(f"grid has unknown keys {unknown}; allowed: i, j, k", field="grid")
    return grid


def validate_grid(grid: Any, max_points: int) -> dict[str, list[float | int]]:
    """Return the grid with defaults filled in and duplicates removed, or raise `Invalid`."""
    grid = grid_object(grid)
    clean: dict[str, list[float | int]] = {
        "i": sorted({check_i(v) for v in _values(grid, "i")}),
        "j": sorted({check_whole("j", v) for v in _values(grid, "j")}),
        "k": sorted({check_whole("k", v) for v in _values(grid, "k")}),
    }
    points = len(clean["i"]) * len(clean["j"]) * len(clean["k"])
    if points > max_points:
        raise Invalid(f"grid has {points} points; at most {max_points} allowed", field="grid")
    return clean


def expand_grid(grid: dict[str, list[float | int]]) -> list[GridPoint]:
    """Every combination, in a stable order (i, then j, then k)."""
    return [
        GridPoint(float(i), int(j), int(k))
        for i, j, k in itertools.product(grid["i"], grid["j"], grid["k"])
    ]
