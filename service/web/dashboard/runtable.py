"""The runs table of a large experiment, a page at a time (issue 24): the API's keyset pages
(service.web.runpages) by id or by the objective's value, best first, optionally of one state,
with links to the next page (its cursor) and the previous one (the cursor that makes the API
answer the page before: the run one page further back than this page's first). A page costs
the same at the start and at the end of 10,000 runs; no offset over the runs is ever taken.

Sorting by another column, a parameter's above all, would need every run's value of it read and
sorted for each page (a parameter is inside each run's JSON): on a large experiment the table
sorts by run and by the objective only, and the heatmap, marginals and configurations tables
answer "which values are best" from the kept statistics."""

from __future__ import annotations

from typing import Any

from service.core.db import database
from service.core.errors import Invalid
from service.core.tables import Experiment
from service.sweeps.statistics import MAXIMIZE
from service.web.runpages import decode_cursor, encode_cursor, runs_page

PAGE_ROWS = 100
STATES = ("queued", "running", "succeeded", "failed", "cancelled", "pruned")


def value_key(experiment: Experiment) -> str:
    """The column that sorts by the objective: the accuracy's own when it is the objective."""
    return "accuracy" if experiment.objective_metric == "accuracy" else "value"


def sortable(experiment: Experiment) -> set[str]:
    return {"id", value_key(experiment)}


def table_page(experiment: Experiment, sort: str, after: str | None,
               status: str | None) -> dict[str, Any]:
    """One page of the table: its runs, and the `after` of the next and previous pages (None:
    no such page; "" the first page)."""
    if status is not None and status not in STATES:
        raise Invalid(f"status must be one of {', '.join(STATES)}", field="status")
    by = "value" if sort == value_key(experiment) else "id"
    key = decode_cursor(after or None, by)
    page = runs_page(experiment, PAGE_ROWS, status, by, key)
    previous = None
    if key is not None:  # past the first page: the previous one, or the first
        runs = page["runs"]
        previous = (_previous(experiment, by, status, runs[0]) if runs else None) or ""
    return {"runs": page["runs"], "next": page["next"], "previous": previous, "after": after,
            "rows": PAGE_ROWS, "states": STATES,
            "sort": "id" if by == "id" else value_key(experiment), "status": status,
            "descending": by == "value" and experiment.objective_direction == MAXIMIZE}


def _one(experiment_id: int, status: str | None, where: str, order: str,
         args: tuple[Any, ...], offset: int) -> tuple[Any, ...] | None:
    """(id, value) of the run `offset` places along `order` among those `where` says."""
    p = database.param
    status_clause = f" AND status = {p}" if status else ""
    sql = (f"SELECT id, value FROM run WHERE experiment_id = {p}{status_clause} AND {where} "
           f"ORDER BY {order} LIMIT 1 OFFSET {int(offset)}")
    params = (experiment_id, *((status,) if status else ()), *args)
    row: tuple[Any, ...] | None = database.execute_sql(sql, params).fetchone()
    return row


def _count(experiment_id: int, status: str | None, where: str, args: tuple[Any, ...]) -> int:
    p = database.param
    status_clause = f" AND status = {p}" if status else ""
    params = (experiment_id, *((status,) if status else ()), *args)
    return int(database.execute_sql(
        f"SELECT COUNT(*) FROM run WHERE experiment_id = {p}{status_clause} AND {where}",
        params).fetchone()[0])


def _previous(experiment: Experiment, by: str, status: str | None,
              first: dict[str, Any]) -> str | None:
    """The cursor after which the previous page starts; None when it is the first page. The
    API's orders walked backwards: by id down; by value from the runs without a value (ids
    down) into those with one, worst first."""
    p = database.param
    if by == "id":
        row = _one(experiment.id, status, f"id < {p}", "id DESC", (first["id"],), PAGE_ROWS)
        return encode_cursor(["id", row[0]]) if row else None
    better_first = experiment.objective_direction == MAXIMIZE
    backwards = f"value {'ASC' if better_first else 'DESC'}, id DESC"
    at = f"CAST({p} AS REAL)"  # the column's own type, as runpages compares (float4 on PG)
    offset = PAGE_ROWS
    if first["value"] is None:
        nulls_before = _count(experiment.id, status, f"value IS NULL AND id < {p}",
                              (first["id"],))
        if nulls_before > PAGE_ROWS:
            row = _one(experiment.id, status, f"value IS NULL AND id < {p}", "id DESC",
                       (first["id"],), PAGE_ROWS)
            return encode_cursor(["n", row[0]]) if row else None
        where, args = "value IS NOT NULL", tuple[Any, ...]()
        offset -= nulls_before
    else:
        ahead = ">" if better_first else "<"
        where = f"value IS NOT NULL AND (value {ahead} {at} OR (value = {at} AND id < {p}))"
        args = (first["value"], first["value"], first["id"])
    row = _one(experiment.id, status, where, backwards, args, offset)
    return encode_cursor(["v", row[1], row[0]]) if row else None
