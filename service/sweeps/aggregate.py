"""Recompute an experiment's status and best run, and its model's best.

Idempotent and order-free: it reads the truth from the database every time, so it does not
matter how often, or in which order, the `aggregate` messages arrive. The best comes from the
configurations' running statistics (config_stat, kept by runs.tally with each result), so a
pass costs the same at 10,000 results as at 10; recompute_statistics rebuilds them from the
runs (the repair path).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from peewee import Query, fn

from service.contract import (
    ACTIVE_RUN_VALUES,
    TERMINAL_RUN_STATES,
    TPE,
    ExperimentStatus,
    Outcome,
    RunStatus,
)
from service.core.db import write_transaction
from service.core.queries import row_by_id, run_kept
from service.core.tables import ConfigStat, Experiment, MLModel, Run
from service.runs.attempts import record_outcome
from service.runs.tally import counted, empty
from service.sweeps.grid import config_key
from service.sweeps.statistics import MAXIMIZE


def succeeded_runs(experiment: Experiment) -> list[tuple[int, dict[str, Any], float]]:
    """(id, parameters, objective value) of the experiment's succeeded runs."""
    rows = run_kept("succeeded_runs", _succeeded_runs_query, experiment.id).fetchall()
    return [(run_id, json.loads(params), value) for run_id, params, value in rows
            if value is not None]


def _succeeded_runs_query(experiment_id: int) -> Query:
    return (Run.select(Run.id, Run.params, Run.value)
            .where(Run.experiment == experiment_id, Run.status == RunStatus.SUCCEEDED.value))


def best_of_experiment(experiment: Experiment) -> tuple[int, float] | None:
    """The best configuration's best-scoring run, and that configuration's mean: two probes
    of the (experiment, mean, first_run_id) index, whatever the number of runs and of
    configurations tied at the best mean (the earliest first run wins a tie). Every stored
    configuration has a success: its row is made by the transaction that counts one."""
    extreme = fn.MAX if experiment.objective_direction == MAXIMIZE else fn.MIN
    best_mean = run_kept(("best_mean", experiment.objective_direction),
                         lambda key: ConfigStat.select(extreme(ConfigStat.mean))
                         .where(ConfigStat.experiment == key), experiment.id).fetchone()[0]
    if best_mean is None:
        return None
    row = run_kept("best_config_at", lambda key, mean: (
        ConfigStat.select(ConfigStat.best_run_id, ConfigStat.mean)
        .where(ConfigStat.experiment == key, ConfigStat.mean == mean)
        .order_by(ConfigStat.first_run_id).limit(1)), experiment.id, best_mean).fetchone()
    return (row[0], row[1])


def recompute_statistics(experiment_id: int) -> None:
    """The repair path: every configuration's statistics again from the succeeded runs (in
    id order), inside the caller's write transaction; then the aggregate."""
    experiment = row_by_id(Experiment, experiment_id)
    if experiment is None:
        return
    maximize = experiment.objective_direction == MAXIMIZE
    stats: dict[str, dict[str, Any]] = {}
    for run_id, params, value in sorted(succeeded_runs(experiment)):
        key = config_key(params)
        stat = stats.get(key) or empty(params)
        stats[key] = {**stat, **counted(stat, run_id, value, maximize)}
    ConfigStat.delete().where(ConfigStat.experiment == experiment_id).execute()
    rows = [{"experiment": experiment_id, "config": key, **stat} for key, stat in stats.items()]
    for start in range(0, len(rows), 500):
        ConfigStat.insert_many(rows[start:start + 500]).execute()
    aggregate_in_transaction(experiment_id)


def status_counts(experiment_id: int) -> dict[str, int]:
    counts = {status.value: 0 for status in RunStatus}
    rows = run_kept("status_counts", lambda key: (
        Run.select(Run.status, fn.COUNT(Run.id)).where(Run.experiment == key)
        .group_by(Run.status)), experiment_id).fetchall()
    for status, number in rows:
        counts[status] = number
    return counts


def _has_runs(experiment_id: int, statuses: tuple[str, ...]) -> bool:
    """Whether the experiment has a run in one of `statuses`: one probe of the (experiment,
    status) index, whatever the number of its runs."""
    return run_kept(("has_runs", statuses), lambda key: (
        Run.select(Run.id).where(Run.experiment == key, Run.status.in_(statuses)).limit(1)),
        experiment_id).fetchone() is not None


def _next_status(experiment: Experiment) -> ExperimentStatus:
    current = ExperimentStatus(experiment.status)
    if current in (ExperimentStatus.CREATED, ExperimentStatus.CANCELLED):
        return current
    if _has_runs(experiment.id, tuple(ACTIVE_RUN_VALUES)) or _search_goes_on(experiment):
        return ExperimentStatus.RUNNING
    if _has_runs(experiment.id, (RunStatus.SUCCEEDED.value,)):
        return ExperimentStatus.COMPLETED
    return ExperimentStatus.FAILED


def _search_goes_on(experiment: Experiment) -> bool:
    """A TPE search that has not asked for all its configurations yet is not over."""
    search = experiment.search
    if not search or search["strategy"] != TPE:
        return False
    # trials are numbered from 0 without gaps (trials.extend_search): the highest one says
    # how many were asked, read from the end of the (experiment, trial, ...) index
    highest = (Run.select(fn.MAX(Run.trial)).where(Run.experiment == experiment.id).scalar())
    asked = 0 if highest is None else highest + 1
    return asked < search["runs"]


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
            return aggregate_in_transaction(experiment_id)
    finally:
        _leave_waiting(experiment_id)


def aggregate_in_transaction(experiment_id: int) -> bool:
    """Recompute, inside the caller's write transaction."""
    experiment = row_by_id(Experiment, experiment_id)
    if experiment is None:
        return False
    status = _next_status(experiment)
    best = best_of_experiment(experiment)
    finished = status in (ExperimentStatus.COMPLETED, ExperimentStatus.FAILED)
    run_kept("experiment_aggregate", lambda status, best_run, best_mean, finished_at, key: (
        Experiment.update(status=status, best_run_id=best_run, best_mean=best_mean,
                          finished_at=finished_at).where(Experiment.id == key)),
        status.value, best[0] if best else None, best[1] if best else None,
        _finished_at(experiment_id) if finished else experiment.finished_at, experiment_id)
    aggregate_model(experiment.__data__["model"])  # its id, without reading the model's row
    return True


def aggregate_model(model_id: int) -> None:
    """The model's best follows the objective of its newest experiment that has a best: among
    its experiments with that same objective, the best by its best configuration's mean (ties:
    the earlier run). Two queries over the model's experiments' rows, none over their runs:
    this runs with every result."""
    newest = run_kept("newest_objective", lambda key: (
        Experiment.select(Experiment.objective_metric, Experiment.objective_direction)
        .where(Experiment.model == key, Experiment.best_run_id.is_null(False))
        .order_by(Experiment.id.desc()).limit(1)), model_id).fetchone()
    best_run_id = None
    if newest is not None:
        metric, direction = newest
        order = (Experiment.best_mean.desc() if direction == MAXIMIZE
                 else Experiment.best_mean.asc())
        row = run_kept(("model_best_of", direction), lambda key, metric: (
            Experiment.select(Experiment.best_run_id)
            .where(Experiment.model == key, Experiment.objective_metric == metric,
                   Experiment.objective_direction == direction,
                   Experiment.best_run_id.is_null(False), Experiment.best_mean.is_null(False))
            .order_by(order, Experiment.best_run_id).limit(1)), model_id, metric).fetchone()
        best_run_id = row[0] if row else None
    run_kept("model_best", lambda best_run, key: (
        MLModel.update(best_run_id=best_run).where(MLModel.id == key)), best_run_id, model_id)


def record_and_aggregate(run_id: int, experiment_id: int, attempt: int, worker: str,
                         outcome: Outcome, inline: bool = True) -> bool:
    """Write the outcome and, `inline`, in the same transaction, the experiment's status and
    best and its model's best: one transaction and no aggregate message for the usual end of
    a run."""
    with write_transaction():
        recorded = record_outcome(run_id, attempt, worker, outcome)
        if recorded and inline:
            aggregate_in_transaction(experiment_id)
    return recorded
