"""Deleting an experiment, and what any deletion (an experiment, a model, an image of a
model: see service/catalog.py) must keep or collect.

Nothing a remaining experiment needs goes with it. A snapshot holds hard links to the image
store, and a remote worker fetches a snapshot's images from the store by hash, so an image's
file and row stay while any snapshot links it (its link count says so), even once no model
uses it; it goes with the last snapshot. A run reused from a deleted run keeps its own result,
folder (hard links) and curve, and says the run it was reused from is gone. A code tree stays
while a model's code version or an experiment names it.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from service.contract import ExperimentStatus
from service.core.db import hold_lock, insert_in_batches, write_transaction
from service.core.errors import Conflict
from service.core.lookup import get_experiment
from service.core.queries import tuple_rows
from service.core.tables import CodeVersion, Experiment, Image, ModelImage, Run, RunEvent
from service.core.timeutil import utcnow
from service.settings import Settings
from service.storage import code_in, image_path, remove_tree
from service.sweeps.aggregate import aggregate_model

CODE_STORE_LOCK = 0x5C0DE  # service.code.versions holds it too, to place a tree and its row
VERSION = re.compile(r"[0-9a-f]{64}")  # a tree's folder; `.staging-*` ones are being placed


def mark_reusers_of_deleted(run_ids: list[int], whose: str) -> None:
    """Runs reused from these keep their result, folder and curve (their own copies) and say
    that the run they were reused from is gone; the event also tells the kept views that
    these runs changed."""
    reusers = Run.select(Run.id, Run.experiment, Run.reused_from, Run.status).where(
        Run.reused_from.in_(run_ids), Run.reused_from_deleted == False)  # noqa: E712 (SQL)
    events = [{"run": run.id, "experiment": run.experiment_id, "from_status": run.status,
               "to_status": run.status, "actor": "api", "at": utcnow(),
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


def collect_unused_code(settings: Settings) -> None:
    """Remove the code trees no model's code version and no experiment names. Under the lock
    an upload holds while it records its row: a tree whose row comes after this is placed
    again by its upload. Each goes by a rename first, so no reader sees half a tree."""
    if not settings.code_dir.is_dir():
        return
    on_disk = {path.name for path in settings.code_dir.iterdir() if VERSION.fullmatch(path.name)}
    if not on_disk:
        return
    with write_transaction():
        hold_lock(CODE_STORE_LOCK)
        used = {version for (version,) in tuple_rows(CodeVersion.select(
            CodeVersion.version).where(CodeVersion.version.in_(on_disk)))}
        used |= {version for (version,) in tuple_rows(Experiment.select(
            Experiment.code_version).where(Experiment.code_version.in_(on_disk)))}
        trash = []
        for version in sorted(on_disk - used):
            trash.append(settings.code_dir / f".trash-{uuid.uuid4().hex}")
            os.rename(code_in(settings.code_dir, version), trash[-1])
    for folder in trash:
        remove_tree(folder)


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
