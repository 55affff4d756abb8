"""Deleting an experiment, and what any deletion (an experiment, a model, an image of a
model: see service/catalog.py) must keep or collect.

Nothing a remaining experiment needs goes with it. A snapshot holds hard links to the image
store, and a remote worker fetches a snapshot's images from the store by hash, so an image's
file and row stay while any snapshot links it (its link count says so), even once no model
uses it; it goes with the last snapshot. A run reused from a deleted run keeps its own result,
folder (hard links) and curve, and says the run it was reused from is gone. A code tree stays
while a model's code version or an experiment names it.

A deletion's rows go in its transaction; its folders are renamed into the trash in it (see
service/storage.py), and removed in the background once it committed, so deleting 10,000 runs
answers in a second, not after 10,000 folder removals. Images are collected after that, as
their snapshots' links held them until then.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

from peewee import Field, Select

from service.contract import ExperimentStatus
from service.core.db import database, hold_lock, insert_in_batches, write_transaction
from service.core.errors import Conflict
from service.core.lookup import get_experiment
from service.core.queries import tuple_rows
from service.core.tables import CodeVersion, Experiment, Image, ModelImage, Run, RunEvent
from service.core.timeutil import utcnow
from service.settings import Settings
from service.storage import (
    code_in,
    has_trash,
    image_path,
    move_into_trash,
    pending_batches,
    remove_empty_trash,
    remove_gone,
    remove_tree,
    settle_batch,
    trash_batch,
)
from service.sweeps.aggregate import aggregate_model

log = logging.getLogger("sweeplab.removal")
CODE_STORE_LOCK = 0x5C0DE  # service.code.versions holds it too, to place a tree and its row
VERSION = re.compile(r"[0-9a-f]{64}")  # a tree's folder; `.staging-*` ones are being placed


def mark_reusers_of_deleted(deleted: Select, whose: str) -> None:
    """Runs reused from the `deleted` runs (a query of their ids, not a list: a model's can
    be more than SQLite takes as values) keep their result, folder and curve (their own
    copies) and say that the run they were reused from is gone; the event also tells the kept
    views that these runs changed."""
    reused = (Run.reused_from.in_(deleted), Run.reused_from_deleted == False)  # noqa: E712
    reusers = tuple_rows(Run.select(Run.id, Run.experiment, Run.reused_from, Run.status)
                         .where(*reused))
    events = [{"run": run_id, "experiment": experiment_id, "from_status": status,
               "to_status": status, "actor": "api", "at": utcnow(),
               "reason": f"run {reused_from}, whose result it reused, was deleted with {whose}"}
              for run_id, experiment_id, reused_from, status in reusers]
    insert_in_batches(RunEvent, events)
    Run.update(reused_from_deleted=True).where(*reused).execute()


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


def _tops(settings: Settings) -> list[tuple[Path, Field]]:
    """The top folders a deletion empties, each with the key its folders are named by."""
    return [(settings.snapshots_dir, Experiment.id), (settings.runs_dir, Run.id)]


@contextmanager
def folders_to_trash(settings: Settings) -> Iterator[Callable[[list[int], list[int]], None]]:
    """Around a deletion's transaction (entered before it, so left after it ends): the function
    that renames experiments' snapshots and runs' folders into the trash, to call last in the
    transaction. Committed, they are removed in the background; failed, they are put back."""
    batch = uuid.uuid4().hex

    def move(experiment_ids: list[int], run_ids: list[int]) -> None:
        move_into_trash(settings.snapshots_dir, map(str, experiment_ids), batch)
        move_into_trash(settings.runs_dir, map(str, run_ids), batch)

    committed = False
    try:
        yield move
        committed = True
    finally:
        for top, _ in _tops(settings):
            settle_batch(top, batch, put_back=lambda name: not committed)
        if any(has_trash(top) for top, _ in _tops(settings)):
            remove_in_background(settings)  # a batch put back leaves its empty folder


def recover_trash(settings: Settings) -> None:
    """At start, before serving: a deletion cut off by a crash left its batch pending. The
    folders whose rows are still there (its transaction never committed) go back in place;
    the rest, and every batch marked gone, are removed in the background."""
    for top, key in _tops(settings):
        for batch in pending_batches(top):
            names = [entry.name for entry in trash_batch(top, batch).iterdir()]
            kept = _existing_ids(key, [int(name) for name in names if name.isdigit()])
            settle_batch(top, batch, put_back=kept.__contains__)
    if any(has_trash(top) for top, _ in _tops(settings)):
        remove_in_background(settings)


def _existing_ids(key: Field, ids: list[int]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(ids), 500):  # SQLite limits a statement's values
        chunk = ids[start:start + 500]
        found |= {str(id_) for (id_,) in tuple_rows(key.model.select(key)
                                                    .where(key.in_(chunk)))}
    return found


# One thread removes the trash; a deletion's removal waits behind another's, never the request.
_remover = ThreadPoolExecutor(1, thread_name_prefix="trash")
_scheduled: set[Future[None]] = set()
_scheduled_lock = threading.Lock()


def remove_in_background(settings: Settings) -> None:
    future = _remover.submit(_empty_trash, settings)
    with _scheduled_lock:
        _scheduled.add(future)
    future.add_done_callback(_forget)


def _forget(future: Future[None]) -> None:
    with _scheduled_lock:
        _scheduled.discard(future)


def wait_for_removals() -> None:
    """Until every removal asked for so far has ended (the API waits for them as it stops)."""
    with _scheduled_lock:
        pending = list(_scheduled)
    wait(pending)


def _empty_trash(settings: Settings) -> None:
    """Remove the folders of committed deletions, then collect the images no snapshot links
    any more (their links went with the snapshots), then the emptied trash folders: a trash
    folder gone means all of that is done."""
    try:
        for top, _ in _tops(settings):
            remove_gone(top)
        database.connect(reuse_if_open=True)
        try:
            collect_unused_images(settings)
        finally:
            database.close()
        for top, _ in _tops(settings):
            remove_empty_trash(top)
    except Exception:  # the thread must go on; what is left is removed by the next removal
        log.exception("removing the trash failed")


def delete_experiment(settings: Settings, experiment_id: int) -> None:
    """An experiment that is not running, its runs and their folders (in the background); the
    model's best is chosen again without it. 409 while it runs (cancel it first)."""
    with folders_to_trash(settings) as trash, write_transaction():
        experiment = get_experiment(experiment_id)
        if experiment.status == ExperimentStatus.RUNNING:
            raise Conflict(f"experiment {experiment_id} is running; cancel it first")
        runs = Run.select(Run.id).where(Run.experiment == experiment_id)
        run_ids = [run_id for (run_id,) in tuple_rows(runs)]
        mark_reusers_of_deleted(runs, f"experiment {experiment_id}")
        Experiment.delete().where(Experiment.id == experiment_id).execute()  # cascades
        aggregate_model(experiment.__data__["model"])
        trash([experiment_id], run_ids)
