"""How rows look over HTTP. Field names here are the contract: add freely, never rename."""

from __future__ import annotations

from typing import Any

from peewee import fn

from service.aggregate import status_counts
from service.models import Experiment, MLModel, ModelImage, Run
from service.timeutil import iso


def params_json(run: Run) -> dict[str, float | int]:
    return {"i": run.param_i, "j": run.param_j, "k": run.param_k}


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "experiment_id": run.experiment_id,
        "params": params_json(run),
        "status": run.status,
        "accuracy": run.accuracy,
        "attempts": run.attempts,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_s": run.duration_s,
        "exit_code": run.exit_code,
        "error": run.error,
    }


def best_json(run_id: int | None) -> dict[str, Any] | None:
    run = Run.get_or_none(Run.id == run_id) if run_id else None
    if run is None:
        return None
    return {"run_id": run.id, "experiment_id": run.experiment_id, "params": params_json(run),
            "accuracy": run.accuracy}


def label_counts(model_id: int) -> tuple[int, dict[str, int]]:
    rows = (ModelImage.select(ModelImage.label, fn.COUNT(ModelImage.id).alias("n"))
            .where(ModelImage.model == model_id).group_by(ModelImage.label).tuples())
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
    }


def experiment_json(experiment: Experiment, with_runs: bool = True) -> dict[str, Any]:
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
        "counts": status_counts(experiment.id),
        "best": best_json(experiment.best_run_id),
        # true while some queued runs' messages have not reached RabbitMQ yet
        "waiting_for_broker": experiment.unpublished,
    }
    if with_runs:
        runs = Run.select().where(Run.experiment == experiment.id).order_by(Run.id)
        body["runs"] = [run_json(run) for run in runs]
    return body
