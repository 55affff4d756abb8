"""Rows by id, or the 404 that names what is missing; and a model's current code version."""

from __future__ import annotations

from service.core.errors import NotFound
from service.core.queries import row_by_id
from service.core.tables import CodeVersion, Experiment, MLModel, Run


def get_model(model_id: int, for_update: bool = False) -> MLModel:
    model = row_by_id(MLModel, model_id, for_update=for_update)
    if model is None:
        raise NotFound(f"model {model_id} does not exist")
    return model


def get_experiment(experiment_id: int) -> Experiment:
    experiment = row_by_id(Experiment, experiment_id)
    if experiment is None:
        raise NotFound(f"experiment {experiment_id} does not exist")
    return experiment


def get_run(run_id: int) -> Run:
    run = row_by_id(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run


def current_code(model_id: int) -> CodeVersion | None:
    """The model's current code: its last uploaded version; None: the deployment's scripts."""
    return (CodeVersion.select().where(CodeVersion.model == model_id)
            .order_by(CodeVersion.uploaded_at.desc(), CodeVersion.id.desc()).first())
