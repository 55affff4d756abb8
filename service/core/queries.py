"""Queries whose SQL peewee builds once, run again with new values.

Peewee builds a query's SQL from its expression tree on every execution; for a table of twenty
columns that is most of the cost of reading one row (profiled: three quarters of the polled
experiment view, a third of a claim), and the handful of small queries a run's result and its
aggregate make cost the worker about 3 ms a run that way. The hot queries go through here
instead: peewee builds each one once per database kind, with stand-in values where the real
ones go, and the SQL is kept and run again with the values of the call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from peewee import Model, Query

from service.core.db import database, is_sqlite

M = TypeVar("M", bound=Model)
# Values no query of ours holds: they mark where each argument goes. A value reaches the SQL's
# parameters through its field's conversion, which for a text field makes a string of it.
_STAND_INS = tuple(-7_654_321 - n for n in range(32))
_kept: dict[tuple[Hashable, bool], tuple[str, list[int | None], list[Any]]] = {}
_kept_lock = threading.Lock()


def _slot(param: Any, stand_ins: Sequence[int]) -> int | None:
    """Which argument this parameter is, or None for a constant of the query itself."""
    for index, stand_in in enumerate(stand_ins):
        if (type(param) in (int, float) and param == stand_in) or param == str(stand_in):
            return index
    return None


def _compile(build: Callable[..., Query], arity: int) -> tuple[str, list[int | None], list[Any]]:
    stand_ins = _STAND_INS[:arity]
    sql, params = build(*stand_ins).sql()
    slots = [_slot(param, stand_ins) for param in params]
    if sorted({slot for slot in slots if slot is not None}) != list(range(arity)):
        raise RuntimeError(f"a kept query does not use each of its {arity} arguments: {sql}")
    # A value the query makes itself as it is built (a field's default, the time) would be
    # kept with its SQL and written again by every later call: refuse such a query.
    if build(*stand_ins).sql() != (sql, params):
        raise RuntimeError(f"a kept query holds a value that changes: {sql}")
    return sql, slots, params


def run_kept(key: Hashable, build: Callable[..., Query], *args: Any) -> Any:
    """Run the query `build(*args)` would make, its SQL built once per `key` (which names its
    shape) and database kind; the cursor. Arguments are passed to the driver as they are, so
    each must be what its field would have made of it (a string, a number, a datetime, None),
    and every value the query holds that is not an argument must be the same at each call."""
    cache_key = (key, is_sqlite())
    with _kept_lock:
        kept = _kept.get(cache_key)
    if kept is None:
        kept = _compile(build, len(args))
        with _kept_lock:
            _kept[cache_key] = kept
    sql, slots, constants = kept
    values = [constant if slot is None else args[slot]
              for slot, constant in zip(slots, constants, strict=True)]
    return database.execute_sql(sql, values)


def _select_by_key(model: type[Model], for_update: bool) -> Callable[[Any], Query]:
    def build(key: Any) -> Query:
        query = model.select().where(model._meta.primary_key == key)
        if for_update and not is_sqlite():  # SQLite's IMMEDIATE transaction already locks
            query = query.for_update()
        return query
    return build


def row_by_id(model: type[M], key: Any, for_update: bool = False) -> M | None:
    """The row with this primary key as a model instance, or None."""
    cursor = run_kept(("row", model, for_update), _select_by_key(model, for_update), key)
    row = cursor.fetchone()
    return None if row is None else instance_of(model, row)


def instance_of(model: type[M], row: tuple[Any, ...]) -> M:
    """A model instance of a row as stored (its columns in the model's field order), through
    each field's own conversion, as peewee would make it."""
    fields = model._meta.sorted_fields
    values = {field.name: None if value is None else field.python_value(value)
              for field, value in zip(fields, row, strict=True)}
    instance = model(**values)
    # As read: nothing to save. Peewee's own readers clear it so; its stubs omit `_dirty`.
    instance._dirty.clear()  # type: ignore[attr-defined]
    return instance


def tuple_rows(query: Query) -> Iterable[tuple[Any, ...]]:
    """The rows of `query.tuples()`. Peewee's stubs type that as the query itself, whose rows
    would be model instances; this says what they are."""
    return query.tuples()
