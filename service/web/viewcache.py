"""The polled experiment view, kept as JSON bytes while nothing it shows has changed.

Clients poll `GET /api/v1/experiments/{id}` (the dashboard, scripts waiting for the end; the
benchmark polls 20 times a second): building its JSON is most of the API's CPU during a sweep.
Everything the view shows changes through a run's status change (each one a `run_event` row),
a new run (a TPE search adds some) or the experiment's own row, so one small query tells
whether the kept bytes are still the answer. Nothing is ever invalidated by hand: a stale entry
simply does not match.

Past INLINE_RUNS runs, while only its runs changed, a view is built again at most every
BIG_REBUILD_S: in a sweep of 10,000 runs a run ends between any two polls, and building the view
(counts over 10,000 runs, the best configurations, the recent runs) at every poll cost the API 5
ms of CPU a run, beside scripts that need the cores. Its counts and recent runs are then up to
that old; a change of the experiment's own row (its status, its end, a new best) shows at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any, NamedTuple

from peewee import Query, fn

from service.core.errors import NotFound
from service.core.queries import instance_of, run_kept
from service.core.tables import Experiment, Run, RunEvent
from service.sweeps.aggregate import status_counts
from service.web.views import INLINE_RUNS, experiment_json, run_view, shown_run_rows

KEPT = 64  # experiments whose view is kept: those being watched
BIG_REBUILD_S = 0.5
EXPERIMENT_FIELDS = len(Experiment._meta.sorted_fields)  # the version's head: its own row


class _Kept(NamedTuple):
    version: tuple[Any, ...]
    body: bytes
    built_at: float  # time.monotonic()
    big: bool  # past INLINE_RUNS runs


_kept: OrderedDict[int, _Kept] = OrderedDict()
# each kept experiment's runs: run id -> (its row, its view, its JSON)
_runs_kept: dict[int, dict[int, tuple[tuple[Any, ...], dict[str, Any], str]]] = {}
_lock = threading.Lock()


def _version_query(key: int) -> Query:
    # Both the ends of indexes (ids are never reused, so a new run has the highest id): the
    # same cost for an experiment of 10,000 runs as for one of 27.
    newest_run = Run.select(fn.MAX(Run.id)).where(Run.experiment == key)
    newest_event = RunEvent.select(fn.MAX(RunEvent.id)).where(RunEvent.experiment == key)
    return Experiment.select(Experiment, newest_run, newest_event).where(Experiment.id == key)


def _stored_version(experiment_id: int) -> tuple[Any, ...] | None:
    """The experiment's row as stored (not made into a model: its JSON fields would be parsed
    on every poll), its newest run and its newest run event, in one query; None if it is
    gone."""
    return run_kept("experiment_version", _version_query, experiment_id).fetchone()


def _still_the_answer(kept: _Kept, version: tuple[Any, ...]) -> bool:
    if kept.version == version:
        return True
    return (kept.big and kept.version[:EXPERIMENT_FIELDS] == version[:EXPERIMENT_FIELDS]
            and time.monotonic() - kept.built_at < BIG_REBUILD_S)


def _kept_if_current(experiment_id: int, version: tuple[Any, ...]) -> bytes | None:
    with _lock:
        kept = _kept.get(experiment_id)
        if kept is None or not _still_the_answer(kept, version):
            return None
        _kept.move_to_end(experiment_id)
        return kept.body


def kept_view_bytes(experiment_id: int) -> bytes | None:
    """The kept view if it is still the answer; None if it is stale, not kept or gone. Two
    queries of a few microseconds: cheap enough for the event loop itself (see show)."""
    with _lock:
        if experiment_id not in _kept:
            return None  # not even the query
    version = _stored_version(experiment_id)
    return None if version is None else _kept_if_current(experiment_id, version)


def experiment_view_bytes(experiment_id: int) -> bytes:
    """The experiment's JSON view, built again only when something in it changed."""
    version = _stored_version(experiment_id)
    if version is None:
        raise NotFound(f"experiment {experiment_id} does not exist")
    kept = _kept_if_current(experiment_id, version)
    if kept is not None:
        return kept
    # The experiment as its version read it; its runs read after: a change in between is
    # shown now and built again at the next poll.
    experiment = instance_of(Experiment, version[:EXPERIMENT_FIELDS])
    counts = status_counts(experiment_id)  # and so how many runs it has
    total = sum(counts.values())
    views, parts = _runs_with_json(experiment, total)
    shown = experiment_json(experiment, runs=views, counts=counts)
    del shown["runs"]  # spliced in below, from each run's own JSON
    head = json.dumps(shown)
    body = f'{head[:-1]}, "runs": [{", ".join(parts)}]}}'.encode()
    with _lock:
        _kept[experiment_id] = _Kept(version, body, time.monotonic(), total > INLINE_RUNS)
        _kept.move_to_end(experiment_id)
        while len(_kept) > KEPT:
            gone, _ = _kept.popitem(last=False)
            _runs_kept.pop(gone, None)
    return body


def _runs_with_json(experiment: Experiment,
                    total: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Each run's view and its JSON, built again only for runs whose row changed: in a sweep
    of 1,000 runs one ends between two polls, and building every run's view and JSON again
    was two thirds of the API's time (11 ms a poll)."""
    experiment_id = experiment.id
    before = _runs_kept.get(experiment_id, {})
    now: dict[int, tuple[tuple[Any, ...], dict[str, Any], str]] = {}
    for row in shown_run_rows(experiment, total):
        kept = before.get(row[0])
        if kept is None or kept[0] != row:
            view = run_view(row)
            kept = (row, view, json.dumps(view))
        now[row[0]] = kept
    with _lock:  # dropped with the experiment's kept view (at most KEPT experiments)
        _runs_kept[experiment_id] = now  # never changed after: builds in other threads share it
    return [kept[1] for kept in now.values()], [kept[2] for kept in now.values()]
