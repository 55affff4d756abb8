"""Recompute an experiment's status and best run, and its model's best, from the runs.

Idempotent and order-free: it reads the truth from the database every time, so it does not
matter how often, or in which order, the `aggregate` messages arrive.
"""

from __future__ import annotations

import threading

from peewee import fn

from service.db import write_transaction
from service.models import (
    TERMINAL_RUN_STATES,
    Experiment,
    ExperimentStatus,
    MLModel,
    Run,
    RunStatus,
)


def best_run_query(*conditions: object) -> Run | None:
    """The succeeded run with the highest accuracy; ties go to the earlier (lower id) run."""
    return (Run.select().join(Experiment)
            .where(Run.status == RunStatus.SUCCEEDED.value, *conditions)
            .order_by(Run.accuracy.desc(), Run.id.asc())
            .first())


def status_counts(experiment_id: int) -> dict[str, int]:
    counts = {status.value: 0 for status in RunStatus}
    rows = (Run.select(Run.status, fn.COUNT(Run.id).alias("n"))
            .where(Run.experiment == experiment_id).group_by(Run.status).tuples())
    for status, number in rows:
        counts[status] = number
    return counts


def _next_status(experiment: Experiment, counts: dict[str, int]) -> ExperimentStatus:
    current = ExperimentStatus(experiment.status)
    if current in (ExperimentStatus.CREATED, ExperimentStatus.CANCELLED):
        return current
    unfinished = counts[RunStatus.QUEUED] + counts[RunStatus.RUNNING]
    if unfinished:
        return ExperimentStatus.RUNNING
    if counts[RunStatus.SUCCEEDED]:
        return ExperimentStatus.COMPLETED
    return ExperimentStatus.FAILED


def _finished_at(experiment_id: int) -> object:
    return (Run.select(fn.MAX(Run.finished_at))
            .where(Run.experiment == experiment_id,
                   Run.status.in_([s.value for s in TERMINAL_RUN_STATES]))
            .scalar())


# the experiments a thread of this process waits to aggregate
_waiting: set[int] = set()
_waiting_lock = threading.Lock()


def _join_waiting(experiment_id: int) -> bool:
    """Queue up to aggregate, unless a thread already waits to: that one takes the database
    lock after this request's result was committed, so it will count it. When a sweep's runs
    end together their aggregates arrive together, and most have nothing left to do."""
    with _waiting_lock:
        if experiment_id in _waiting:
            return False
        _waiting.add(experiment_id)
        return True


def _leave_waiting(experiment_id: int) -> None:
    with _waiting_lock:
        _waiting.discard(experiment_id)


def aggregate_experiment(experiment_id: int) -> bool:
    """Recompute; False when skipped because another pass was about to read anyway."""
    if not _join_waiting(experiment_id):
        return False
    try:
        with write_transaction():
            _leave_waiting(experiment_id)  # from here on, new results need a pass of their own
            return _aggregate_locked(experiment_id)
    finally:
        _leave_waiting(experiment_id)


def _aggregate_locked(experiment_id: int) -> bool:
    experiment = Experiment.get_or_none(Experiment.id == experiment_id)
    if experiment is None:
        return False
    counts = status_counts(experiment_id)
    status = _next_status(experiment, counts)
    best = best_run_query(Run.experiment == experiment_id)
    finished = status in (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED)
    Experiment.update(
        status=status.value,
        best_run_id=best.id if best else None,
        finished_at=_finished_at(experiment_id) if finished else experiment.finished_at,
    ).where(Experiment.id == experiment_id).execute()
    aggregate_model(experiment.model_id)
    return True


def aggregate_model(model_id: int) -> None:
    best = best_run_query(Experiment.model == model_id)
    MLModel.update(best_run_id=best.id if best else None).where(MLModel.id == model_id).execute()
