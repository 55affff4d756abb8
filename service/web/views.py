"""How rows look over HTTP. Field names here are the contract: add freely, never rename."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from peewee import fn

from service.contract import RunStatus
from service.core.db import database
from service.core.lookup import current_code
from service.core.queries import tuple_rows
from service.core.tables import ConfigStat, Experiment, MLModel, ModelImage, Run
from service.core.timeutil import iso
from service.sweeps.aggregate import status_counts
from service.sweeps.statistics import (
    MAXIMIZE,
    Configuration,
    comparison_json,
    configuration_json,
    group,
    ranked,
)
from service.sweeps.trials import search_json
from service.workers.registry import worker_json

# The columns a run shows, in order. The experiment view reads them with one raw query: it is
# the endpoint clients poll, and building 27 model instances cost more than the rest of it.
RUN_FIELDS = ("id", "experiment_id", "params", "status", "accuracy",
              "attempts", "started_at", "finished_at", "duration_s", "exit_code", "error",
              "seed", "value", "trial", "reused_from", "reused_from_deleted", "pruned_step",
              "pruned_value", "worker")


def _iso_any(value: datetime | str | None) -> str | None:
    """A timestamp as ISO 8601 UTC, from a datetime or SQLite's stored text."""
    if value is None or isinstance(value, datetime):
        return iso(value)
    return iso(datetime.fromisoformat(value))


def _params(value: dict[str, Any] | str) -> dict[str, Any]:
    """A run's parameters, from a model's field or the raw query's JSON text (object_pairs:
    in the grid's order)."""
    return json.loads(value) if isinstance(value, str) else value


def run_view(values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(RUN_FIELDS, values, strict=True))
    return {
        "id": row["id"],
        "experiment_id": row["experiment_id"],
        "params": _params(row["params"]),
        "seed": row["seed"],
        "status": row["status"],
        "accuracy": row["accuracy"],
        "value": row["value"],
        "attempts": row["attempts"],
        "worker": worker_json(row["worker"]),  # its latest attempt's
        "started_at": _iso_any(row["started_at"]),
        "finished_at": _iso_any(row["finished_at"]),
        "duration_s": row["duration_s"],
        "exit_code": row["exit_code"],
        "error": row["error"],
        "trial": row["trial"],
        "reused_from": row["reused_from"],
        "reused_from_deleted": bool(row["reused_from_deleted"]),
        # where a pruned run was stopped: its last step and the objective's value there
        "pruned_at": None if row["pruned_step"] is None else {
            "step": row["pruned_step"], "value": row["pruned_value"]},
    }


def run_json(run: Run) -> dict[str, Any]:
    return run_view(tuple(getattr(run, name) for name in RUN_FIELDS))


def run_rows(experiment_id: int) -> list[tuple[Any, ...]]:
    """The experiment's runs as rows of RUN_FIELDS, in id order."""
    cursor = database.execute_sql(
        f"SELECT {', '.join(RUN_FIELDS)} FROM run WHERE experiment_id = {database.param} "
        f"ORDER BY id", (experiment_id,))
    return cursor.fetchall()


def runs_of(experiment_id: int) -> list[dict[str, Any]]:
    return [run_view(values) for values in run_rows(experiment_id)]


INLINE_RUNS = 100  # an experiment of up to this many runs lists them all in its view
SHOWN_CONFIGURATIONS = 100  # the best configurations a view lists (with how many there are)


def run_count(experiment_id: int) -> int:
    return Run.select().where(Run.experiment == experiment_id).count()


def shown_run_rows(experiment: Experiment, total: int) -> list[tuple[Any, ...]]:
    """Every run of an experiment of up to INLINE_RUNS; past that its best and its most
    recent INLINE_RUNS (the rest is paged at /runs), in id order."""
    if total <= INLINE_RUNS:
        return run_rows(experiment.id)
    p = database.param
    recent = database.execute_sql(
        f"SELECT {', '.join(RUN_FIELDS)} FROM run WHERE experiment_id = {p} "
        f"ORDER BY id DESC LIMIT {INLINE_RUNS}", (experiment.id,)).fetchall()
    best = experiment.best_run_id
    if best is not None and all(row[0] != best for row in recent):
        recent += database.execute_sql(
            f"SELECT {', '.join(RUN_FIELDS)} FROM run WHERE id = {p}", (best,)).fetchall()
    return sorted(recent, key=lambda row: row[0])


def best_of(runs: list[dict[str, Any]], best_run_id: int | None, metric: str,
            direction: str) -> dict[str, Any] | None:
    """The best run's summary, naming the objective it is best by (its experiment's)."""
    run = next((run for run in runs if run["id"] == best_run_id), None)
    if run is None:
        return None
    return {"run_id": run["id"], "experiment_id": run["experiment_id"],
            "params": run["params"], "seed": run["seed"], "accuracy": run["accuracy"],
            "value": run["value"], "metric": metric, "direction": direction}


def best_json(run_id: int | None) -> dict[str, Any] | None:
    row = (Run.select(Run, Experiment.objective_metric, Experiment.objective_direction)
           .join(Experiment).where(Run.id == run_id).objects().first()) if run_id else None
    if row is None:
        return None
    return best_of([run_json(row)], run_id, row.objective_metric, row.objective_direction)


def label_counts(model_id: int) -> tuple[int, dict[str, int]]:
    rows = tuple_rows(ModelImage.select(ModelImage.label, fn.COUNT(ModelImage.id).alias("n"))
                      .where(ModelImage.model == model_id).group_by(ModelImage.label))
    total, labels = 0, {}
    for label, number in rows:
        total += number
        if label is not None:
            labels[label] = number
    return total, dict(sorted(labels.items()))


def model_json(model: MLModel) -> dict[str, Any]:
    image_count, labels = label_counts(model.id)
    experiments = Experiment.select().where(Experiment.model == model.id).count()
    return {
        "id": model.id,
        "name": model.name,
        "description": model.description,
        "created_at": iso(model.created_at),
        "image_count": image_count,
        "unlabelled_count": image_count - sum(labels.values()),
        "labels": labels,
        "experiment_count": experiments,
        "best": best_json(model.best_run_id),
        # its current code (the version new experiments pin); None: the deployment's scripts
        "code_version": code.version if (code := current_code(model.id)) else None,
    }


def all_models_json() -> list[dict[str, Any]]:
    return [model_json(model) for model in MLModel.select().order_by(MLModel.id)]


def experiment_json(experiment: Experiment, with_runs: bool = True,
                    runs: list[dict[str, Any]] | None = None,
                    counts: dict[str, int] | None = None) -> dict[str, Any]:
    """The experiment's view; with `runs`, those views of its runs (already read, of runs
    counted by status as `counts`) in it."""
    body: dict[str, Any] = {
        "id": experiment.id,
        "model_id": experiment.model_id,
        "status": experiment.status,
        "grid": experiment.grid,
        "timeout_s": experiment.timeout_s,
        "image_count": experiment.image_count,
        "created_at": iso(experiment.created_at),
        "started_at": iso(experiment.started_at),
        "finished_at": iso(experiment.finished_at),
        # true while some queued runs' messages have not reached RabbitMQ yet
        "waiting_for_broker": experiment.unpublished,
        "objective": {"metric": experiment.objective_metric,
                      "direction": experiment.objective_direction},
        "repeats": experiment.repeats,
        "search": search_json(experiment),
        "early_stopping": experiment.early_stopping,
        "reuse": experiment.reuse,
        # the model's code it trains, pinned at creation; None: the deployment's scripts
        "code_version": experiment.code_version,
    }
    if not with_runs:
        return {**body, "counts": status_counts(experiment.id),
                "best": best_json(experiment.best_run_id)}
    if runs is None:
        counts = status_counts(experiment.id)
        runs = [run_view(row) for row in shown_run_rows(experiment, sum(counts.values()))]
    counts = _counts(runs) if counts is None else counts
    total = sum(counts.values())
    every_run = len(runs) == total
    return {**body, "counts": counts,
            "run_count": total,
            # false past INLINE_RUNS: then `runs` holds the best and the most recent runs
            "runs_complete": every_run,
            "runs_url": f"/api/v1/experiments/{experiment.id}/runs",
            "runs": runs,
            "best": best_of(runs, experiment.best_run_id, experiment.objective_metric,
                            experiment.objective_direction),
            **configurations_json(runs if every_run else None, experiment)}


def _counts(runs: list[dict[str, Any]]) -> dict[str, int]:
    counts = {status.value: 0 for status in RunStatus}
    for run in runs:
        counts[run["status"]] += 1
    return counts


def configurations_json(runs: list[dict[str, Any]] | None,
                        experiment: Experiment) -> dict[str, Any]:
    """The best SHOWN_CONFIGURATIONS configurations' n, mean, std and 95% interval, best
    first, and how many there are; and whether the best is distinguishable from the
    runner-up (Welch's t-test). From `runs` when they are every run, else from the stored
    succeeded runs."""
    if runs is None:
        order, total = stored_configurations(experiment, SHOWN_CONFIGURATIONS)
    else:
        order = ranked(group([(r["id"], r["params"], r["value"]) for r in runs
                              if r["status"] == RunStatus.SUCCEEDED and r["value"] is not None]),
                       experiment.objective_direction)
        total = len(order)
    return {"configurations": [configuration_json(config)
                               for config in order[:SHOWN_CONFIGURATIONS]],
            "configuration_count": total,
            "comparison": comparison_json(order)}


def stored_configurations(experiment: Experiment,
                          limit: int) -> tuple[list[Configuration], int]:
    """The best `limit` configurations from their kept statistics (not from the runs), and
    how many there are. A row exists only once a run of its configuration succeeded (it is
    made and counted in one transaction), so every row counts, from the index alone."""
    ours = ConfigStat.experiment == experiment.id
    order = (ConfigStat.mean.desc() if experiment.objective_direction == MAXIMIZE
             else ConfigStat.mean.asc())
    rows = (ConfigStat.select(ConfigStat.params, ConfigStat.run_ids, ConfigStat.n,
                              ConfigStat.mean, ConfigStat.m2, ConfigStat.low, ConfigStat.high)
            .where(ours).order_by(order, ConfigStat.first_run_id).limit(limit))
    count = ConfigStat.select(fn.COUNT(ConfigStat.id)).where(ours).scalar()
    return [Configuration(params, run_ids=run_ids, stored=(n, mean, m2, low, high))
            for params, run_ids, n, mean, m2, low, high in tuple_rows(rows)], count
