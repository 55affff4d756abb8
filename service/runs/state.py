"""The one place where a run changes status.

Every change is a conditional update inside a write transaction (IMMEDIATE on SQLite): it only
happens if the run is still in the state, and with the attempt, the caller believes it is. That
is what makes a late result after a cancel, or a second copy of a redelivered message, harmless.
Each change is recorded in `run_event` with when and by whom.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from peewee import Query, Value

from service.contract import (
    TERMINAL_RUN_STATES,
    TPE,
    Claim,
    ClaimOutcome,
    ExperimentStatus,
    RunStatus,
)
from service.core.db import is_sqlite, write_transaction
from service.core.queries import row_by_id, run_kept
from service.core.tables import CodeVersion, Experiment, Run, RunEvent, RunPoint
from service.core.timeutil import utcnow
from service.runs.tally import count_success

MAX_ATTEMPTS = 3


def _locked(run_id: int) -> Run | None:
    """The run, locked for this transaction (SQLite's IMMEDIATE transaction already is)."""
    return row_by_id(Run, run_id, for_update=True)


def _record(run: Run, to: RunStatus, actor: str, reason: str | None) -> None:
    run_kept("run_event", _event_insert, run.id, run.experiment_id, run.status, to.value, actor,
             reason, utcnow())


def _event_insert(run_id: int, experiment_id: int, from_status: str, to_status: str, actor: str,
                  reason: str | None, at: datetime) -> Query:
    return RunEvent.insert(run=run_id, experiment=experiment_id, from_status=from_status,
                           to_status=to_status, actor=actor, reason=reason, at=at)


def _update(run_id: int, **changes: Any) -> None:
    """`Run.update(**changes)` of one run, its SQL built once for each set of columns."""
    names = tuple(changes)
    fields = Run._meta.fields
    values = [fields[name].db_value(value) for name, value in changes.items()]
    run_kept(("run_update", names), _update_query(names), *values, run_id)


def _update_query(names: tuple[str, ...]) -> Callable[..., Query]:
    def build(*values_then_key: Any) -> Query:
        *values, key = values_then_key
        return Run.update(**dict(zip(names, values, strict=True))).where(Run.id == key)
    return build


def transition(run_id: int, to: RunStatus, *, actor: str, expect: set[RunStatus],
               attempt: int | None = None, reason: str | None = None,
               **changes: Any) -> bool:
    """Move the run to `to` if it is in one of `expect` (and at `attempt`); True if it moved."""
    with write_transaction():
        run = _locked(run_id)
        if run is None or run.status not in expect:
            return False
        if attempt is not None and run.attempts != attempt:
            return False
        _record(run, to, actor, reason)
        _update(run_id, status=to.value, **changes)
        if to == RunStatus.SUCCEEDED and changes.get("value") is not None:
            count_success(run.experiment_id, run_id, run.params, run.config, changes["value"])
        return True


def cancel_queued(experiment_id: int, actor: str, reason: str) -> int:
    """Move every queued run of the experiment to cancelled, with its event, in a few
    statements rather than one transition a run: a 10,000-run experiment is cancelled in well
    under a second. Inside the caller's write transaction. The runs are locked first where
    another writer could claim one meanwhile (PostgreSQL; SQLite's IMMEDIATE transaction
    already keeps every writer out), so the events and the update see the same runs."""
    queued = (Run.experiment == experiment_id) & (Run.status == RunStatus.QUEUED.value)
    if not is_sqlite():  # in id order, as the publisher's batch updates take them
        Run.select(Run.id).where(queued).order_by(Run.id).for_update().execute()
    now = utcnow()
    events = Run.select(Run.id, Run.experiment, Value(RunStatus.QUEUED.value),
                        Value(RunStatus.CANCELLED.value), Value(actor), Value(reason),
                        Value(now)).where(queued)
    RunEvent.insert_from(events, [RunEvent.run, RunEvent.experiment, RunEvent.from_status,
                                  RunEvent.to_status, RunEvent.actor, RunEvent.reason,
                                  RunEvent.at]).execute()
    return Run.update(status=RunStatus.CANCELLED.value, finished_at=now).where(queued).execute()


def owner_is_alive(run: Run, lease_s: float) -> bool:
    """Whether the worker recorded on a running run may still be running it."""
    if run.heartbeat_at is None or utcnow() - run.heartbeat_at > timedelta(seconds=lease_s):
        return False
    host, _, pid = (run.worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another host: only its heartbeat can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take(run: Run, worker: str, reason: str | None, spec: dict[str, Any]) -> Claim:
    attempt = run.attempts + 1
    now = utcnow()
    _record(run, RunStatus.RUNNING, worker, reason)
    if run.attempts:  # the new attempt's curve only (a first attempt has none to drop)
        RunPoint.delete().where(RunPoint.run == run.id).execute()
    _update(run.id, status=RunStatus.RUNNING.value, attempts=attempt, worker=worker,
            child_pgid=None, started_at=now, heartbeat_at=now, finished_at=None, error=None,
            exit_code=None, accuracy=None, duration_s=None)
    return Claim(ClaimOutcome.CLAIMED, attempt, run.worker, run.child_pgid, spec)


def _give_up(run: Run, worker: str, spec: dict[str, Any]) -> Claim:
    reason = f"worker lost: {run.attempts} attempt(s) ended with their worker gone ({run.worker})"
    _record(run, RunStatus.FAILED, worker, reason)
    Run.update(status=RunStatus.FAILED.value, error=reason,
               finished_at=utcnow()).where(Run.id == run.id).execute()
    return Claim(ClaimOutcome.EXHAUSTED, run.attempts, run.worker, run.child_pgid, spec)


def claim_run(run_id: int, worker: str, lease_s: float) -> Claim:
    """Take the run for `worker`, or say why not; with the run's spec whenever it exists."""
    with write_transaction():
        run = _locked(run_id)
        if run is None:
            return Claim(ClaimOutcome.GONE)
        experiment = row_by_id(Experiment, run.experiment_id)
        assert experiment is not None  # the run's key holds it (deleting it deletes the run)
        spec = _spec_of(run, experiment)
        if run.status in TERMINAL_RUN_STATES:
            return Claim(ClaimOutcome.DONE, run.attempts, spec=spec)
        if experiment.status == ExperimentStatus.CREATED:
            # Only a start sends a run's message: this one is left over from something else.
            return Claim(ClaimOutcome.NOT_STARTED, spec=spec)
        if run.status == RunStatus.QUEUED:
            return _take(run, worker, None, spec)
        if owner_is_alive(run, lease_s):
            return Claim(ClaimOutcome.BUSY, run.attempts, run.worker, spec=spec)
        if run.attempts >= MAX_ATTEMPTS:
            return _give_up(run, worker, spec)
        return _take(run, worker, f"taken over from {run.worker}, whose worker is gone", spec)


def heartbeat(run_id: int, attempt: int, **changes: Any) -> bool:
    """Renew the lease; False when the run is no longer this attempt's (cancelled, taken over)."""
    with write_transaction():
        updated = (Run.update(heartbeat_at=utcnow(), **changes)
                   .where(Run.id == run_id, Run.status == RunStatus.RUNNING.value,
                          Run.attempts == attempt)
                   .execute())
    return updated == 1


def _spec_of(run: Run, experiment: Experiment) -> dict[str, Any]:
    """What a worker needs to know of a run to train it (its store makes a RunSpec of it)."""
    return {"run_id": run.id, "experiment_id": run.experiment_id, "params": run.params,
            "timeout_s": experiment.timeout_s,
            "metric": experiment.objective_metric, "seed": run.seed,
            "aggregate_later": aggregate_later(experiment),
            "early_stopping": experiment.early_stopping is not None,
            "code": code_spec(experiment)}


def code_spec(experiment: Experiment) -> dict[str, Any] | None:
    """The experiment's pinned code version as a worker needs it; None: the deployment's."""
    if experiment.code_version is None:
        return None
    row = (CodeVersion.select(CodeVersion.train, CodeVersion.test, CodeVersion.requirements)
           .where(CodeVersion.model == experiment.model_id,
                  CodeVersion.version == experiment.code_version).first())
    if row is None:  # cannot be while the experiment exists (its model's rows go with it)
        return None
    return {"version": experiment.code_version, "train": row.train, "test": row.test,
            "requirements": row.requirements}


def aggregate_later(experiment: Experiment) -> bool:
    """Whether a run's result is aggregated by the aggregate actor rather than in its own
    transaction: only a TPE search's, which must ask for more configurations then. A large
    sweep's are aggregated with each result too: handing them to the actor (one message and
    one pass a result, competing with the runs for the worker's threads) measured 2.5 times
    slower at 1,000 runs than the pass in the result's own transaction."""
    return experiment.strategy == TPE
