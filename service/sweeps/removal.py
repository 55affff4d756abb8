"""Deleting an experiment, and what any deletion (an experiment, a model, an image of a
model: see service/catalog.py) must keep or collect.

Nothing a remaining experiment needs goes with it. A snapshot holds hard links to the image
store, and a remote worker fetches a snapshot's images from the store by hash, so an image's
file and row stay while any snapshot links it (its link count says so), even once no model
uses it; it goes with the last snapshot. A run reused from a deleted run keeps its own result,
folder (hard links) and curve, and says the run it was reused from is gone.
"""

from __future__ import annotations

from pathlib import Path

from service.contract import ExperimentStatus
from service.core.db import insert_in_batches, write_transaction
from service.core.errors import Conflict
from service.core.lookup import get_experiment
from service.core.tables import Experiment, Image, ModelImage, Run, RunEvent
from service.core.timeutil import utcnow
from service.settings import Settings
from service.storage import image_path, remove_tree
from service.sweeps.aggregate import aggregate_model


def mark_reusers_of_deleted(run_ids: list[int], whose: str) -> None:
    """Runs reused from these keep their result, folder and curve (their own copies) and say
    that the run they were reused from is gone; the event also tells the kept views that
    these runs changed."""
    reusers = Run.select(Run.id, Run.reused_from, Run.status).where(
        Run.reused_from.in_(run_ids), Run.reused_from_deleted == False)  # noqa: E712 (SQL)
    events = [{"run": run.id, "from_status": run.status, "to_status": run.status,
               "actor": "api", "at": utcnow(),
               "reason": f"run {run.reused_from}, whose result it reused, was deleted with "
                         f"{whose}"} for run in reusers]
    insert_in_batches(RunEvent, events)
    Run.update(reused_from_deleted=True).where(Run.id.in_([e["run"] for e in events])).execute()


def collect_unused_images(settings: Settings) -> None:
    """Delete the images no model uses and no snapshot links (the store's file is their only
    link), rows and files. Called after snapshots were removed."""
    unused = ~Image.sha256.in_(ModelImage.select(ModelImage.image))
    with write_transaction():
        paths = {image.sha256: image_path(settings, image.sha256, image.extension)
                 for image in Image.select().where(unused)}
        unlinked = [sha for sha, path in paths.items() if _only_link(path)]
        # asked again as it deletes: an upload committed since the select (on PostgreSQL)
        # uses the image again, and it is kept
        gone = Image.delete().where(Image.sha256.in_(unlinked), unused).returning(
            Image.sha256).tuples().execute()
        for (sha,) in gone:
            paths[sha].unlink(missing_ok=True)


def _only_link(path: Path) -> bool:
    try:
        return path.stat().st_nlink <= 1
    except FileNotFoundError:
        return True


def remove_folders(settings: Settings, experiment_ids: list[int], run_ids: list[int]) -> None:
    for experiment_id in experiment_ids:
        remove_tree(settings.snapshots_dir / str(experiment_id))
    for run_id in run_ids:
        remove_tree(settings.runs_dir / str(run_id))


def delete_experiment(settings: Settings, experiment_id: int) -> None:
    """An experiment that is not running, its runs and their folders; the model's best is
    chosen again without it. 409 while it runs (cancel it first)."""
    with write_transaction():
        experiment = get_experiment(experiment_id)
        if experiment.status == ExperimentStatus.RUNNING:
            raise Conflict(f"experiment {experiment_id} is running; cancel it first")
        runs = [run.id for run in Run.select(Run.id).where(Run.experiment == experiment_id)]
        mark_reusers_of_deleted(runs, f"experiment {experiment_id}")
        Experiment.delete().where(Experiment.id == experiment_id).execute()  # cascades
        aggregate_model(experiment.__data__["model"])
    remove_folders(settings, [experiment_id], runs)
    collect_unused_images(settings)
