"""The OpenAPI document as served: service/web/openapi.yaml, which carries the default limits, with
the limits that are settings replaced by this deployment's values."""

from __future__ import annotations

import copy
from typing import Any

from service.settings import Settings

# Where each limit that is a setting sits, and the phrase of its description that names it.
TIMEOUT_PATH = ("components", "schemas", "ExperimentCreate", "properties", "timeout_s")
TIMEOUT_PHRASE = "at most {} (SWEEPLAB_MAX_RUN_TIMEOUT_S)"
GRID_PATH = ("components", "schemas", "Grid")
GRID_PHRASE = "at most {} grid points"
RUNS_PATH = ("components", "schemas", "Search", "properties", "runs")
RUNS_PHRASE = "at most {} (SWEEPLAB_MAX_GRID_POINTS)"


def _number(value: float) -> int | float:
    """3000.0 as 3000: a whole limit reads as an integer, in JSON and in prose."""
    return int(value) if float(value).is_integer() else value


def _node(document: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = document
    for key in path:
        node = node[key]
    return node


def _set_limit(schema: dict[str, Any], key: str, value: int | float, phrase: str) -> None:
    """Put `value` under `key` and in the description's phrase that names the old value."""
    old = schema[key]
    schema[key] = value
    schema["description"] = schema["description"].replace(phrase.format(old),
                                                          phrase.format(value))


def served_document(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A copy of `document` with the deployment's run timeout and grid-point limits."""
    served = copy.deepcopy(document)
    _set_limit(_node(served, TIMEOUT_PATH), "maximum", _number(settings.max_run_timeout_s),
               TIMEOUT_PHRASE)
    _set_limit(_node(served, GRID_PATH), "x-max-grid-points", settings.max_grid_points,
               GRID_PHRASE)
    _set_limit(_node(served, RUNS_PATH), "maximum", settings.max_grid_points, RUNS_PHRASE)
    return served
