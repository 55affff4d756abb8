"""An experiment's runs as CSV: a column per parameter (any names, in the grid's order), then
what each run gave. Values as a script got them (`true`, `adam`, `0.001`), floats exact.

A text cell that a spreadsheet would run as a formula (it starts with =, +, -, @, a tab or a
carriage return) gets a leading apostrophe: a parameter's string or a script's error message is
data, never a formula."""

from __future__ import annotations

import csv
import io
from typing import Any

from service.web.dashboard.parameters import names
from service.web.dashboard.scale import param_text

RUN_COLUMNS = ("run", "trial", "seed", "status")
RESULT_COLUMNS = ("accuracy", "duration_s", "attempts", "reused_from", "error")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    text = param_text(value)
    if isinstance(value, str) and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def header(experiment: dict[str, Any]) -> list[str]:
    """The columns: a parameter named like another column is written `param:NAME`."""
    metric = experiment["objective"]["metric"]
    taken = {*RUN_COLUMNS, *RESULT_COLUMNS, metric}
    params = [f"param:{name}" if name in taken else name for name in names(experiment)]
    value = [metric] if metric != "accuracy" else []
    return [*RUN_COLUMNS, *params, *value, *RESULT_COLUMNS]


def row(run: dict[str, Any], params: list[str], metric: str) -> list[Any]:
    value = [run["value"]] if metric != "accuracy" else []
    return [cell(item) for item in (
        run["id"], run.get("trial"), run["seed"], run["status"],
        *(run["params"].get(name) for name in params), *value,
        run["accuracy"], run["duration_s"], run["attempts"], run["reused_from"], run["error"])]


def runs_csv(experiment: dict[str, Any]) -> str:
    """Every run of the experiment, in id order, under its header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header(experiment))
    params, metric = names(experiment), experiment["objective"]["metric"]
    for run in sorted(experiment["runs"], key=lambda run: run["id"]):
        writer.writerow(row(run, params, metric))
    return buffer.getvalue()
