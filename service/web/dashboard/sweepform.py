"""The model page's sweep form as the body of POST /api/v1/models/{id}/experiments.

The form only reshapes what was typed (numbers from text, a range from "low..high", the
checkboxes as booleans); every check is the API's own, so a mistake reads the same on the page
as over HTTP. A field left empty is left out: the API's default applies.
"""

from __future__ import annotations

from typing import Any

from multidict import MultiMapping

from service.core.errors import ApiError, Invalid

PARAMS = ("i", "j", "k")
RANGE = ".."
# What the form shows before anything is typed: the API's default grid, one run each, the
# accuracy maximised, no early stopping, known results reused.
DEFAULTS: dict[str, Any] = {
    "strategy": "grid", "runs": "", "seed": "", "parallel": "",
    "i": "0.001, 0.01, 0.1", "j": "1, 2, 4", "k": "1000, 2000, 4000",
    "i_log": False, "j_log": False, "k_log": False,
    "repeats": "1", "metric": "accuracy", "direction": "maximize",
    "rule": "", "min_step": "", "reuse": True, "timeout_s": "",
}
# The input that holds each field the API names in an error (a field's prefix counts too).
INPUTS = {"search": "strategy", "search.strategy": "strategy", "search.runs": "runs",
          "search.seed": "seed", "search.parallel": "parallel", "grid": "i", "grid.i": "i",
          "grid.j": "j", "grid.k": "k", "repeats": "repeats", "objective": "metric",
          "objective.metric": "metric", "objective.direction": "direction",
          "early_stopping": "rule", "early_stopping.rule": "rule",
          "early_stopping.min_step": "min_step", "reuse": "reuse", "timeout_s": "timeout_s"}


def scalar(text: str) -> int | float | str:
    """A whole number, else a number, else the text as typed (for the API to refuse)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def space(key: str, text: str, log: bool) -> list[Any] | dict[str, Any] | None:
    """A parameter's values: "0.001, 0.01" a list, "0.0001..0.1" a range (random and TPE
    searches), empty None (the API's default values)."""
    if not text:
        return None
    if RANGE in text:
        low, _, high = text.partition(RANGE)
        return {"low": scalar(low.strip()), "high": scalar(high.strip()), "log": log}
    if log:
        raise Invalid(f"grid.{key}: a log scale needs a range (low{RANGE}high), not a list",
                      field=f"grid.{key}")
    return [scalar(part) for part in text.replace(",", " ").split()]


def _text(form: MultiMapping[Any], name: str) -> str:
    return str(form.get(name, "")).strip()


def _typed(form: MultiMapping[Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields that were filled in, as numbers where they are numbers."""
    return {name: scalar(_text(form, name)) for name in names if _text(form, name)}


def experiment_body(form: MultiMapping[Any]) -> dict[str, Any]:
    """The API's experiment body from the posted form. Only the fields the form sent go in:
    a form from an older page (a grid and a time limit) means what it meant."""
    grid = {key: values for key in PARAMS
            if (values := space(key, _text(form, key), f"{key}_log" in form)) is not None}
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


def refill(form: MultiMapping[Any] | None) -> dict[str, Any]:
    """The values the form shows: the defaults, or what was posted when it is shown again
    with the API's error."""
    if form is None:
        return dict(DEFAULTS)
    shown = {name: str(form.get(name, default)) for name, default in DEFAULTS.items()
             if isinstance(default, str)}
    ticked = {f"{key}_log": f"{key}_log" in form for key in PARAMS}
    return {**shown, **ticked, "reuse": "true" in form.getall("reuse", ["true"])}


def input_of(field: str | None) -> str | None:
    """The input holding the field an API error names ("grid.i.low" is in "i")."""
    while field:
        if field in INPUTS:
            return INPUTS[field]
        field = field.rpartition(".")[0]
    return None


def error_context(error: ApiError, form: MultiMapping[Any]) -> dict[str, Any]:
    """What the model page shows with the form again: the API's message, the input it is
    about, and the values as they were posted."""
    return {"sweep_error": error.message, "sweep_invalid": input_of(error.field),
            "sweep": refill(form)}
