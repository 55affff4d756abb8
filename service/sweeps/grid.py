"""The parameter grid of an experiment: any names, each a list of numbers, strings or booleans;
validated, then expanded into configurations (one dict of parameters each, in the grid's order,
which is the order a script gets them in)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable
from typing import Any

from service.core.errors import Invalid

Scalar = bool | int | float | str
Params = dict[str, Scalar]
# A rule for one parameter's values: the value and its field in, the cleaned value out.
ValueRule = Callable[[Any, str], Scalar]

DEFAULT_GRID: dict[str, list[Scalar]] = {
    "i": [0.001, 0.01, 0.1],
    "j": [1, 2, 4],
    "k": [1000, 2000, 4000],
}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# A script gets `--images DIR` (train) or `--image FILE` and `--serve` (test) besides its
# parameters: a parameter of those names would be given twice.
RESERVED_NAMES = frozenset({"images", "image", "serve"})
MAX_PARAMS = 16
MAX_VALUES_PER_KEY = 1000
MAX_STRING = 200


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_i(value: Any, field: str = "grid.i") -> float:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise Invalid(f"{field}: {value!r} is not a finite number > 0", field=field)
    return float(value)


def check_whole(value: Any, field: str) -> int:
    whole = _is_number(value) and math.isfinite(value) and float(value).is_integer()
    if not whole or value < 1:
        raise Invalid(f"{field}: {value!r} is not a whole number >= 1", field=field)
    if value > 10**9:
        raise Invalid(f"{field}: {value!r} is larger than 10^9", field=field)
    return int(value)


# The deployment's own train.py (the assignment's) takes a learning rate i > 0 and whole
# numbers j, k >= 1; a model's uploaded code takes whatever its script accepts.
ASSIGNMENT_RULES: dict[str, ValueRule] = {"i": check_i, "j": check_whole, "k": check_whole}


def check_scalar(value: Any, field: str) -> Scalar:
    """A finite number, a boolean, or a short string a script's flag parser takes as a value."""
    if isinstance(value, bool):
        return value
    if _is_number(value):
        if not math.isfinite(value):
            raise Invalid(f"{field}: {value!r} is not a finite number", field=field)
        return value
    if isinstance(value, str):
        if not 0 < len(value) <= MAX_STRING or not value.isprintable():
            raise Invalid(f"{field}: a string value is 1 to {MAX_STRING} printable characters",
                          field=field)
        if value.startswith("-"):
            raise Invalid(f"{field}: {value!r} starts with '-', which a script's argument "
                          f"parser would take for a flag", field=field)
        return value
    raise Invalid(f"{field}: {value!r} is not a number, a string or a boolean", field=field)


def _identity(value: Scalar) -> tuple[str, Any]:
    """What makes two values the same one (1 and 1.0 are; True and 1 are not)."""
    if isinstance(value, bool):
        return ("bool", value)
    return ("number", float(value)) if _is_number(value) else ("str", value)


def clean_values(raw: Any, field: str, rule: ValueRule = check_scalar) -> list[Scalar]:
    """A non-empty list, each value checked, duplicates dropped; numbers sorted, anything
    else in the order given (a categorical axis is drawn in the grid's order)."""
    if not isinstance(raw, list) or not raw:
        raise Invalid(f"{field} must be a non-empty list of values", field=field)
    if len(raw) > MAX_VALUES_PER_KEY:
        raise Invalid(f"{field} has more than {MAX_VALUES_PER_KEY} values", field=field)
    unique: dict[tuple[str, Any], Scalar] = {}
    for value in raw:
        cleaned = rule(value, field)
        unique.setdefault(_identity(cleaned), cleaned)
    values = list(unique.values())
    return sorted(values) if all(_is_number(v) for v in values) else values


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise Invalid(f"grid: parameter name {name!r} must match [A-Za-z_][A-Za-z0-9_]{{0,63}}",
                      field="grid")
    if name in RESERVED_NAMES:
        raise Invalid(f"grid: {name!r} is reserved (scripts get --images, --image and --serve "
                      f"from sweeplab); name the parameter otherwise", field="grid")
    return name


def grid_object(grid: Any, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `grid` field as an object of checked names. Absent, the defaults; naming only some
    of the defaults' parameters, the others keep their default values in the defaults' order
    (so `{"i": [0.1]}` still trains the assignment's j and k); naming all of them, or any
    other, exactly what it names in its order (the order the script gets its flags in)."""
    defaults = DEFAULT_GRID if defaults is None else defaults
    if grid is None:
        return dict(defaults)
    if not isinstance(grid, dict) or not grid:  # {}: a grid of nothing, not "the default"
        raise Invalid("grid must be an object of one or more parameter names, each with its "
                      "values (leave grid out for the default grid)", field="grid")
    if len(grid) > MAX_PARAMS:
        raise Invalid(f"grid has {len(grid)} parameters; at most {MAX_PARAMS} are allowed",
                      field="grid")
    names = [check_name(name) for name in grid]
    if set(names) < set(defaults):
        return {name: grid.get(name, values) for name, values in defaults.items()}
    return dict(grid)


def validate_grid(grid: Any, max_points: int, defaults: dict[str, Any] | None = None,
                  rules: dict[str, ValueRule] | None = None) -> dict[str, list[Scalar]]:
    """The grid with defaults filled in, values checked (by `rules` for the names they
    cover, the assignment's by default) and duplicates removed; or raise `Invalid`."""
    rules = ASSIGNMENT_RULES if rules is None else rules
    clean = {name: clean_values(values, f"grid.{name}", rules.get(name, check_scalar))
             for name, values in grid_object(grid, defaults).items()}
    points = math.prod(len(values) for values in clean.values())
    if points > max_points:
        raise Invalid(f"grid has {points} points; at most {max_points} allowed", field="grid")
    return clean


def expand_grid(grid: dict[str, list[Scalar]]) -> list[Params]:
    """Every combination, in a stable order (the first parameter slowest)."""
    names = list(grid)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*grid.values())]


def config_key(params: Params) -> str:
    """One configuration's identity, whatever order its parameters are in: what the database's
    one-run-per-configuration-and-seed index and the statistics' grouping use."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
