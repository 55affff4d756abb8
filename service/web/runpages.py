"""A large experiment's runs, page by page, and which runs its view shows inline.

The pages are keyset pages: the cursor is the last run's sort key and id (base64 of JSON),
so a page costs the same at the start and at the end of 10,000 runs, and runs that end
between two pages are neither skipped nor seen twice (an offset would shift under them).
Sorted by value, the runs with a value come first, best first, then those without, by id.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from service.contract import RunStatus
from service.core.db import database
from service.core.errors import Invalid
from service.core.tables import Experiment
from service.sweeps.statistics import MAXIMIZE
from service.web.views import RUN_FIELDS, run_view

MAX_PAGE = 1000
DEFAULT_PAGE = 100
SORTS = ("id", "value")
_COLUMNS = ", ".join(RUN_FIELDS)


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def decode_cursor(cursor: str | None, sort: str) -> list[Any] | None:
    """The cursor's key; 422 for anything this route did not hand out for this sort."""
    if cursor is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeError):
        raise Invalid("after is not a cursor this route handed out", field="after") from None
    valid = isinstance(key, list) and all(
        isinstance(part, (int, float)) and not isinstance(part, bool) for part in key[1:])
    if not valid or not key or key[0] not in ("id", "v", "n") or (sort == "id") != (key[0] == "id"):
        raise Invalid("after is not a cursor this route handed out for this sort",
                      field="after")
    return key


def page_params(query: Any) -> tuple[int, str | None, str, list[Any] | None]:
    """limit, status, sort and the cursor's key from the query string; 422 naming the one
    that is wrong."""
    raw_limit = query.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise Invalid(f"limit must be a whole number from 1 to {MAX_PAGE}", field="limit")
    status = query.get("status")
    if status is not None and status not in {s.value for s in RunStatus}:
        raise Invalid(f"status must be one of {', '.join(s.value for s in RunStatus)}",
                      field="status")
    sort = query.get("sort", "id")
    if sort not in SORTS:
        raise Invalid("sort must be id or value", field="sort")
    return int(raw_limit), status, sort, decode_cursor(query.get("after"), sort)


def _select(experiment_id: int, status: str | None, where: str, order: str,
            args: tuple[Any, ...], limit: int) -> list[tuple[Any, ...]]:
    p = database.param
    status_clause = f" AND status = {p}" if status else ""
    sql = (f"SELECT {_COLUMNS} FROM run WHERE experiment_id = {p}{status_clause} AND {where} "
           f"ORDER BY {order} LIMIT {int(limit)}")
    params = (experiment_id, *((status,) if status else ()), *args)
    return database.execute_sql(sql, params).fetchall()


def runs_page(experiment: Experiment, limit: int, status: str | None, sort: str,
              key: list[Any] | None) -> dict[str, Any]:
    """`{"runs": [...], "next": cursor | None}`: one page after `key`."""
    rows = (_by_id(experiment.id, limit + 1, status, key) if sort == "id"
            else _by_value(experiment, limit + 1, status, key))
    more = len(rows) > limit
    rows = rows[:limit]
    following = None
    if more:
        last = dict(zip(RUN_FIELDS, rows[-1], strict=True))
        following = encode_cursor(["id", last["id"]] if sort == "id" else
                                  ["v", last["value"], last["id"]] if last["value"] is not None
                                  else ["n", last["id"]])
    return {"runs": [run_view(row) for row in rows], "next": following}


def _by_id(experiment_id: int, limit: int, status: str | None,
           key: list[Any] | None) -> list[tuple[Any, ...]]:
    p = database.param
    return _select(experiment_id, status, f"id > {p}", "id", (key[1] if key else 0,), limit)


def _by_value(experiment: Experiment, limit: int, status: str | None,
              key: list[Any] | None) -> list[tuple[Any, ...]]:
    p = database.param
    rows: list[tuple[Any, ...]] = []
    if key is None or key[0] == "v":
        better_first = experiment.objective_direction == MAXIMIZE
        past = "<" if better_first else ">"
        where, args = "value IS NOT NULL", tuple[Any, ...]()
        if key is not None:
            # REAL: the column's own type (float4 on PostgreSQL), or a value read back from
            # it would not equal itself as a double and its ties would be skipped
            at = f"CAST({p} AS REAL)"
            where = f"value IS NOT NULL AND (value {past} {at} OR (value = {at} AND id > {p}))"
            args = (key[1], key[1], key[2])
        order = f"value {'DESC' if better_first else 'ASC'}, id"
        rows = _select(experiment.id, status, where, order, args, limit)
    if len(rows) < limit:  # then the runs without a value, by id
        after = key[1] if key is not None and key[0] == "n" else 0
        rows += _select(experiment.id, status, f"value IS NULL AND id > {p}", "id", (after,),
                        limit - len(rows))
    return rows
