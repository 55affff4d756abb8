"""The worker registry: each worker process reports itself every few seconds, and one silent
past the lease is shown lost; one whose last report said it stopped is shown stopped. Stopped
and lost ones are listed for the retention (SWEEPLAB_WORKER_RETENTION_S) after they were last
seen, then forgotten. Blocking: called in the DB threads.

Remote workers send their report over HTTP, so it is checked field by field, as strictly as
any other body the API accepts.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from peewee import Case

from service.contract import RunStatus
from service.core.db import write_transaction
from service.core.errors import Invalid
from service.core.queries import tuple_rows
from service.core.tables import Run, WorkerProcess
from service.core.timeutil import iso, utcnow

REPORT_KEYS = ("name", "host", "pid", "threads", "gpus", "version", "queues", "remote")
# and optionally, in a worker's last report: "stopped": true
REPORT_FIELDS = (*REPORT_KEYS, "stopped")
MAX_LIST_ITEMS = 64
MAX_ITEM_CHARS = 255
MAX_PID = 2**31 - 1
MAX_THREADS = 10_000
PRINTABLE = re.compile(r"[^\x00-\x1f\x7f-\x9f]+")  # no control characters


def _text(info: dict[str, Any], key: str, max_chars: int) -> str:
    value = info[key]
    if not isinstance(value, str) or not PRINTABLE.fullmatch(value) or len(value) > max_chars:
        raise Invalid(f"{key} must be 1 to {max_chars} printable characters", field=key)
    return value


def _whole(info: dict[str, Any], key: str, top: int) -> int:
    value = info[key]
    # bool is an int to Python, never to a client: true is not a thread count
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise Invalid(f"{key} must be a whole number from 1 to {top}", field=key)
    return value


def _texts(info: dict[str, Any], key: str) -> list[str]:
    value = info[key]
    if (not isinstance(value, list) or len(value) > MAX_LIST_ITEMS
            or not all(isinstance(item, str) and PRINTABLE.fullmatch(item)
                       and len(item) <= MAX_ITEM_CHARS for item in value)):
        raise Invalid(f"{key} must be a list of at most {MAX_LIST_ITEMS} strings of 1 to "
                      f"{MAX_ITEM_CHARS} printable characters", field=key)
    return value


def _checked(info: dict[str, Any]) -> dict[str, Any]:
    """The report's fields, or Invalid naming the first one that is wrong."""
    if not isinstance(info, dict):
        raise Invalid("a worker report must be a JSON object")
    unknown = sorted(set(info) - set(REPORT_FIELDS))
    missing = [key for key in REPORT_KEYS if key not in info]
    if unknown or missing:
        raise Invalid(f"unknown fields {unknown}, missing fields {missing}; expected: "
                      f"{', '.join(REPORT_KEYS)}", field=(unknown or missing)[0])
    fields = {"name": _text(info, "name", MAX_ITEM_CHARS),
              "host": _text(info, "host", MAX_ITEM_CHARS),
              "pid": _whole(info, "pid", MAX_PID),
              "threads": _whole(info, "threads", MAX_THREADS),
              "gpus": _texts(info, "gpus"),
              "version": _text(info, "version", 100),
              "queues": _texts(info, "queues")}
    for key in ("remote", "stopped"):
        if not isinstance(info.get(key, False), bool):
            raise Invalid(f"{key} must be true or false", field=key)
    # Runs name their worker "host:pid": a report under another name would never match them.
    if fields["name"] != f"{fields['host']}:{fields['pid']}":
        raise Invalid("name must be host:pid", field="name")
    return {**fields, "remote": info["remote"]}


def report_worker(info: dict[str, Any], retention_s: float) -> None:
    """Record a worker process's report: created on its first, updated (and seen now) after,
    stopped by its last. A worker's first report forgets those past the retention."""
    fields = _checked(info)
    now = utcnow()
    stopped_at = now if info.get("stopped") else None
    with write_transaction():
        # Update first: an insert that meets the existing row would still take a number from
        # PostgreSQL's sequence, one per report, forever.
        changes: dict[str, Any] = {**fields, "last_seen_at": now, "stopped_at": stopped_at}
        if stopped_at is None:
            # A stopped process never reports again: a report under its name is a new process
            # that was given the same pid, started now.
            changes["started_at"] = Case(None, [(WorkerProcess.stopped_at.is_null(False), now)],
                                         WorkerProcess.started_at)
        updated = (WorkerProcess.update(**changes)
                   .where(WorkerProcess.name == fields["name"]).execute())
        if updated:
            return
        # Stopped and lost workers pile up only as new ones start: cleared out here
        WorkerProcess.delete().where(
            WorkerProcess.last_seen_at < _kept_since(now, retention_s)).execute()
        # Two first reports may race (a retried HTTP request): the later one updates.
        (WorkerProcess.insert(**fields, started_at=now, last_seen_at=now, stopped_at=stopped_at)
         .on_conflict(conflict_target=[WorkerProcess.name],
                      preserve=[*(getattr(WorkerProcess, key) for key in REPORT_KEYS),
                                WorkerProcess.last_seen_at, WorkerProcess.stopped_at])
         .execute())


def _kept_since(now: datetime, retention_s: float) -> datetime:
    """Workers last seen before this are forgotten (the retention is at least the lease, so
    a live one never is)."""
    return now - timedelta(seconds=retention_s)


def _running_runs() -> dict[str, list[int]]:
    """The ids of the running runs, by the worker that holds them."""
    held: dict[str, list[int]] = defaultdict(list)
    rows = tuple_rows(Run.select(Run.id, Run.worker)
                      .where(Run.status == RunStatus.RUNNING.value, Run.worker.is_null(False))
                      .order_by(Run.id))
    for run_id, worker in rows:
        held[worker].append(run_id)
    return held


def _status(worker: WorkerProcess, seen_since: datetime) -> str:
    if worker.stopped_at is not None:
        return "stopped"
    return "alive" if worker.last_seen_at >= seen_since else "lost"


def list_workers(lease_s: float, retention_s: float) -> list[dict[str, Any]]:
    """Every worker process seen within the retention, newest first; `lost` once silent for
    longer than `lease_s`, `stopped` once it said so."""
    now = utcnow()
    seen_since = now - timedelta(seconds=lease_s)
    held = _running_runs()
    workers = (WorkerProcess.select()
               .where(WorkerProcess.last_seen_at >= _kept_since(now, retention_s))
               .order_by(WorkerProcess.started_at.desc(), WorkerProcess.id.desc()))
    return [{
        "name": worker.name,
        "host": worker.host,
        "pid": worker.pid,
        "threads": worker.threads,
        "gpus": worker.gpus,
        "version": worker.version,
        "queues": worker.queues,
        "remote": worker.remote,
        "started_at": iso(worker.started_at),
        "last_seen_at": iso(worker.last_seen_at),
        "status": _status(worker, seen_since),
        "runs": held.get(worker.name, []),
    } for worker in workers]


def host_of(worker: str | None) -> str | None:
    """The host part of a run's `worker` ("host:pid"): everything before the last colon."""
    if not worker:
        return None
    host, colon, _ = worker.rpartition(":")
    return host if colon else worker


def worker_json(worker: str | None) -> dict[str, Any] | None:
    """A run's `worker` ("host:pid") as the API shows it; None before a worker claimed it. A
    remote worker names itself, so a name without a pid shows none."""
    if not worker:
        return None
    _, colon, pid = worker.rpartition(":")
    return {"host": host_of(worker),
            "pid": int(pid) if colon and pid.isascii() and pid.isdigit() else None}
