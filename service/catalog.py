"""The catalog of models: creating, reading and deleting a model, and taking an image out of
its training set. Deleting keeps what remaining experiments need (see sweeps/removal.py)."""

from __future__ import annotations

from typing import Any

from service.contract import ACTIVE_RUN_VALUES, ExperimentStatus
from service.core.db import write_transaction
from service.core.errors import Conflict, Invalid, NotFound
from service.core.lookup import get_model
from service.core.queries import tuple_rows
from service.core.tables import Experiment, MLModel, ModelImage, Run
from service.ingest.labels import has_control_characters
from service.settings import Settings
from service.sweeps.removal import (
    collect_unused_code,
    collect_unused_images,
    folders_to_trash,
    mark_reusers_of_deleted,
)


def create_model(body: dict[str, Any]) -> MLModel:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise Invalid("name must be a non-empty string of at most 200 characters", field="name")
    if has_control_characters(name):
        raise Invalid("name must not hold control characters (NUL, newline, tab, escape)",
                      field="name")
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 10_000:
        raise Invalid("description must be a string of at most 10000 characters",
                      field="description")
    with write_transaction():
        if MLModel.select().where(MLModel.name == name.strip()).exists():
            raise Conflict(f"a model named {name.strip()!r} already exists")
        return MLModel.create(name=name.strip(), description=description)


def _has_active_runs(model_id: int) -> bool:
    return (Run.select().join(Experiment)
            .where(Experiment.model == model_id, Run.status.in_(ACTIVE_RUN_VALUES),
                   Experiment.status == ExperimentStatus.RUNNING.value)
            .exists())


def delete_model(settings: Settings, model_id: int) -> None:
    """The model, its images' links, its code versions, its experiments, runs and their
    folders (in the background, then the images no other model uses); the code trees no other
    model uses. 409 while one of its experiments runs."""
    with folders_to_trash(settings) as trash, write_transaction():
        get_model(model_id)
        if _has_active_runs(model_id):
            raise Conflict(f"model {model_id} has queued or running runs; cancel its "
                           f"experiments first")
        experiments = Experiment.select(Experiment.id).where(Experiment.model == model_id)
        experiment_ids = [experiment_id for (experiment_id,) in tuple_rows(experiments)]
        runs = Run.select(Run.id).where(Run.experiment.in_(experiments))
        run_ids = [run_id for (run_id,) in tuple_rows(runs)]
        mark_reusers_of_deleted(runs, f"model {model_id}")
        MLModel.delete().where(MLModel.id == model_id).execute()  # cascades in the schema
        trash(experiment_ids, run_ids)
    collect_unused_code(settings)


def delete_model_image(settings: Settings, model_id: int, sha256: str) -> None:
    """Take the image out of the model's training set: later experiments do not see it;
    existing snapshots keep it."""
    with write_transaction():
        get_model(model_id)
        deleted = ModelImage.delete().where(ModelImage.model == model_id,
                                            ModelImage.image == sha256).execute()
        if not deleted:
            raise NotFound(f"model {model_id} has no image {sha256}")
    collect_unused_images(settings)
