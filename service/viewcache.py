"""The polled experiment view, kept as JSON bytes while nothing it shows has changed.

Clients poll `GET /api/v1/experiments/{id}` (the dashboard, scripts waiting for the end; the
benchmark polls 20 times a second): building its JSON is most of the API's CPU during a sweep.
Everything the view shows changes through a run's status change (each one a `run_event` row),
a new run (a TPE search adds some) or the experiment's own row, so one small query tells
whether the kept bytes are still the answer. Nothing is ever invalidated by hand: a stale entry
simply does not match.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from service.db import database
from service.errors import NotFound
from service.models import Experiment
from service.rows import row_by_id
from service.views import experiment_json

KEPT = 64  # experiments whose view is kept: those being watched
_kept: OrderedDict[int, tuple[Any, bytes]] = OrderedDict()
_lock = threading.Lock()


def _marks(experiment_id: int) -> tuple[int, int | None]:
    """How many runs the experiment has, and its newest run event."""
    param = database.param
    return database.execute_sql(
        f"SELECT (SELECT COUNT(*) FROM run WHERE experiment_id = {param}), "
        f"(SELECT MAX(run_event.id) FROM run_event JOIN run ON run.id = run_event.run_id "
        f"WHERE run.experiment_id = {param})", (experiment_id, experiment_id)).fetchone()


def _version(experiment: Experiment) -> tuple[Any, ...]:
    fields = Experiment._meta.sorted_fields
    return (tuple(getattr(experiment, field.name) for field in fields),
            tuple(_marks(experiment.id)))


def _kept_if_current(experiment_id: int, version: tuple[Any, ...]) -> bytes | None:
    with _lock:
        kept = _kept.get(experiment_id)
        if kept is None or kept[0] != version:
            return None
        _kept.move_to_end(experiment_id)
        return kept[1]


def kept_view_bytes(experiment_id: int) -> bytes | None:
    """The kept view if it is still the answer; None if it is stale, not kept or gone. Two
    queries of a few microseconds: cheap enough for the event loop itself (see show)."""
    with _lock:
        if experiment_id not in _kept:
            return None  # not even the queries
    experiment = row_by_id(Experiment, experiment_id)
    return None if experiment is None else _kept_if_current(experiment_id, _version(experiment))


def experiment_view_bytes(experiment_id: int) -> bytes:
    """The experiment's JSON view, built again only when something in it changed."""
    experiment = row_by_id(Experiment, experiment_id)
    if experiment is None:
        raise NotFound(f"experiment {experiment_id} does not exist")
    version = _version(experiment)
    kept = _kept_if_current(experiment_id, version)
    if kept is not None:
        return kept
    body = json.dumps(experiment_json(experiment)).encode()
    with _lock:
        _kept[experiment_id] = (version, body)
        _kept.move_to_end(experiment_id)
        while len(_kept) > KEPT:
            _kept.popitem(last=False)
    return body
