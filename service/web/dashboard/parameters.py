"""An experiment's parameters as the pages show them: any names, in the grid's order (the order
a script gets them in), each with its values when they are a list.

The deployment's own i, j and k keep their longer titles; any other parameter is called by its
name. Values are numbers, strings or booleans: numbers are drawn on a numeric axis, anything else
as categories in the grid's order."""

from __future__ import annotations

import functools
import json
from typing import Any

# The assignment's parameters, as the deployment's train.py reads them.
TITLES = {"i": "learning rate (i)", "j": "layers (j)", "k": "steps (k)"}


def names(experiment: dict[str, Any]) -> list[str]:
    """The experiment's parameters, in its grid's (or search space's) order."""
    return list(experiment["grid"])


def title(name: str) -> str:
    return TITLES.get(name, name)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def numeric(values: list[Any]) -> bool:
    """Whether a parameter's values go on a numeric axis (all numbers; a boolean is not)."""
    return bool(values) and all(is_number(value) for value in values)


def token(value: Any) -> str:
    """A value's identity for grouping: True and 1 are different values, 1 and 1 the same
    (Python's own equality would merge True with 1 in a dict's keys)."""
    try:
        return _known_token(value)
    except TypeError:  # not hashable (no parameter's value is; an odd run's might be)
        return _token(value)


@functools.lru_cache(maxsize=4096, typed=True)  # typed: True and 1 stay apart
def _known_token(value: Any) -> str:
    """token, remembered: a large experiment's page asks it of every grid point's values."""
    return _token(value)


def _token(value: Any) -> str:
    if is_number(value):
        return json.dumps(float(value))
    return json.dumps(value)


def point(params: dict[str, Any], order: list[str]) -> tuple[str, ...]:
    """A configuration's identity in the order of `order` (a missing name is null)."""
    return tuple(token(params.get(name)) for name in order)


def value_lists(experiment: dict[str, Any]) -> dict[str, list[Any]] | None:
    """The experiment's values of each parameter when all are lists; None when one is a range
    (`{"low", "high", "log"}`: a random or TPE search's continuous parameter)."""
    grid = experiment["grid"]
    if grid and all(isinstance(values, list) for values in grid.values()):
        return dict(grid)
    return None
