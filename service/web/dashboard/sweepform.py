"""The model page's sweep form as the body of POST /api/v1/models/{id}/experiments.

The form only reshapes what was typed (a parameter per row of name and values, values
comma-separated: numbers where they are numbers, true/false booleans, anything else a string; a
range from "low..high"; the checkboxes as booleans); every check is the API's own, so a mistake
reads the same on the page as over HTTP, next to the row it is about. A field left empty is left
out: the API's default applies (a row of i, j or k without values: their default values).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multidict import MultiMapping

from service.core.errors import ApiError, Invalid
from service.sweeps.grid import DEFAULT_GRID, NAME, RESERVED_NAMES

RANGE = ".."
ROWS = 6  # rows shown without JavaScript: the default three and three empty ones
MAX_ROWS = 64  # rows read from a post (empty ones too); the API takes at most 16 parameters
NAME_FIELD, VALUES_FIELD, LOG_FIELD = "param_name_", "param_values_", "param_log_"
# What the form shows before anything is typed: the API's default grid, one run each, the
# accuracy maximised, no early stopping, known results reused.
DEFAULTS: dict[str, Any] = {
    "strategy": "grid", "runs": "", "seed": "", "parallel": "",
    "repeats": "1", "metric": "accuracy", "direction": "maximize",
    "rule": "", "min_step": "", "reuse": True, "timeout_s": "",
}
# The input that holds each field the API names in an error (a field's prefix counts too);
# a parameter's fields ("grid.lr.low") are its row's (see input_of).
INPUTS = {"search": "strategy", "search.strategy": "strategy", "search.runs": "runs",
          "search.seed": "seed", "search.parallel": "parallel", "repeats": "repeats",
          "objective": "metric", "objective.metric": "metric",
          "objective.direction": "direction", "early_stopping": "rule",
          "early_stopping.rule": "rule", "early_stopping.min_step": "min_step",
          "reuse": "reuse", "timeout_s": "timeout_s"}


@dataclass(frozen=True)
class Row:
    """One parameter as typed: its name, its values' text, whether its range is on a log scale."""

    name: str = ""
    values: str = ""
    log: bool = False

    @property
    def empty(self) -> bool:
        return not self.name and not self.values


DEFAULT_ROWS = [Row(name, ", ".join(str(value) for value in values))
                for name, values in DEFAULT_GRID.items()]


def scalar(text: str) -> int | float | str:
    """A whole number, else a number, else the text as typed (for the API to refuse)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def value(text: str) -> int | float | bool | str:
    """A parameter's value: a number, true or false a boolean, anything else a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return scalar(text)


def space(key: str, text: str, log: bool) -> list[Any] | dict[str, Any]:
    """A parameter's values: "0.001, 0.01" a list, "0.0001..0.1" a range (random and TPE
    searches)."""
    if RANGE in text:
        low, _, high = text.partition(RANGE)
        return {"low": scalar(low.strip()), "high": scalar(high.strip()), "log": log}
    if log:
        raise Invalid(f"grid.{key}: a log scale needs a range (low{RANGE}high), not a list",
                      field=f"grid.{key}")
    return [value(part.strip()) for part in text.split(",") if part.strip()]


def _text(form: MultiMapping[Any], name: str) -> str:
    return str(form.get(name, "")).strip()


def _typed(form: MultiMapping[Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields that were filled in, as numbers where they are numbers."""
    return {name: scalar(_text(form, name)) for name in names if _text(form, name)}


def rows_of(form: MultiMapping[Any]) -> list[Row]:
    """The parameter rows as posted, in order (a page from before the rows sent i, j, k)."""
    if not any(str(key).startswith(NAME_FIELD) for key in form):
        return [Row(key, _text(form, key), f"{key}_log" in form)
                for key in DEFAULT_GRID if key in form]
    indexes = sorted({int(suffix) for key in form if str(key).startswith(NAME_FIELD)
                      and (suffix := str(key).removeprefix(NAME_FIELD)).isdigit()})
    return [Row(_text(form, f"{NAME_FIELD}{n}"), _text(form, f"{VALUES_FIELD}{n}"),
                f"{LOG_FIELD}{n}" in form) for n in indexes[:MAX_ROWS]]


def grid_of(rows: list[Row]) -> dict[str, Any]:
    """The grid the rows name, in their order. A row of the default i, j or k without values
    is left out (the API gives it its default values); any other row needs both parts."""
    grid: dict[str, Any] = {}
    for n, row in enumerate(rows):
        if row.empty:
            continue
        if not row.name:
            raise Invalid(f"grid: the values {row.values!r} need a parameter name",
                          field=f"{NAME_FIELD}{n}")
        if row.name in grid:
            raise Invalid(f"grid: {row.name!r} is named twice", field=f"{NAME_FIELD}{n}")
        if not row.values:
            if row.name in DEFAULT_GRID:
                continue
            raise Invalid(f"grid.{row.name}: give its values, separated by commas",
                          field=f"grid.{row.name}")
        grid[row.name] = space(row.name, row.values, row.log)
    return grid


def experiment_body(form: MultiMapping[Any]) -> dict[str, Any]:
    """The API's experiment body from the posted form. Only the fields the form sent go in:
    a form from an older page (a grid and a time limit) means what it meant."""
    grid = grid_of(rows_of(form))
    body: dict[str, Any] = {"grid": grid} if grid else {}
    if "strategy" in form:
        body["search"] = {"strategy": str(form["strategy"]),
                          **_typed(form, ("runs", "seed", "parallel"))}
    if "metric" in form:
        # the direction always goes with the metric: the default (maximise) is wrong for a loss
        body["objective"] = {"metric": _text(form, "metric"),
                             "direction": _text(form, "direction")}
    stopping = _typed(form, ("rule", "min_step"))
    if stopping:
        body["early_stopping"] = stopping
    if "reuse" in form:  # a hidden "false" before the checkbox's "true"
        body["reuse"] = "true" in form.getall("reuse")
    return {**body, **_typed(form, ("repeats", "timeout_s"))}


def shown_rows(rows: list[Row]) -> list[Row]:
    """The rows the form shows: those given, and empty ones up to ROWS at least."""
    return rows + [Row()] * max(0, ROWS - len(rows))


def refill(form: MultiMapping[Any] | None) -> dict[str, Any]:
    """The values the form shows: the defaults, or what was posted when it is shown again
    with the API's error."""
    if form is None:
        return {**DEFAULTS, "rows": shown_rows(DEFAULT_ROWS)}
    shown = {name: str(form.get(name, default)) for name, default in DEFAULTS.items()
             if isinstance(default, str)}
    return {**shown, "rows": shown_rows(rows_of(form)),
            "reuse": "true" in form.getall("reuse", ["true"])}


def row_input(field: str, rows: list[Row]) -> str | None:
    """The input of the row a grid field is about: "grid.lr.low" is lr's values; "grid" (a
    bad name, too many parameters or points) the first row whose name is not one."""
    if field.startswith((NAME_FIELD, VALUES_FIELD)):
        return field
    name = field.removeprefix("grid.").partition(".")[0] if field != "grid" else None
    for n, row in enumerate(rows):
        if name is not None and row.name == name:
            return f"{VALUES_FIELD}{n}"
        if name is None and row.name and (not NAME.fullmatch(row.name)
                                          or row.name in RESERVED_NAMES):
            return f"{NAME_FIELD}{n}"
    return f"{VALUES_FIELD}0" if rows else None


def input_of(field: str | None, rows: list[Row] | None = None) -> str | None:
    """The input holding the field an API error names ("search.runs" is in "runs")."""
    if field and (field == "grid" or field.startswith(("grid.", NAME_FIELD, VALUES_FIELD))):
        return row_input(field, rows or [])
    while field:
        if field in INPUTS:
            return INPUTS[field]
        field = field.rpartition(".")[0]
    return None


def error_context(error: ApiError, form: MultiMapping[Any]) -> dict[str, Any]:
    """What the model page shows with the form again: the API's message, the input it is
    about, and the values as they were posted."""
    sweep = refill(form)
    return {"sweep_error": error.message, "sweep_invalid": input_of(error.field, sweep["rows"]),
            "sweep": sweep}
