"""Reuse: a configuration and seed whose result is already known, for the same training script
(by content) on the same images (by content, with their labels) and the same objective metric,
is not trained again. The run is recorded `succeeded` with `reused_from` naming the run that
trained it, its folder hard-linked from that run's and its curve copied (so it serves predict,
and outlives the original's deletion, after which `reused_from_deleted` says the original is
gone).

The script's hash is the one the worker recorded for the script it actually ran, so a host
with another script never lends its results; the experiment looks for the hash of the API
host's script when it asks. A run of uploaded code records its code version instead (the whole
tree, its requirements included): runs of one version lend to each other, never to another.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from service.contract import ExperimentStatus, RunStatus
from service.core.db import insert_in_batches, write_transaction
from service.core.queries import row_by_id, tuple_rows
from service.core.tables import Experiment, Run, RunPoint
from service.core.timeutil import utcnow
from service.execution.scripts import script_sha256
from service.runs.state import transition
from service.settings import Settings
from service.storage import link_or_copy


def images_sha256(images: list[tuple[str, str | None]]) -> str:
    """One hash of a training set: each image's content hash with its label, in any order."""
    lines = sorted(f"{sha}\t{label or ''}\n" for sha, label in images)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _source(experiment: Experiment, run: Run, script: str) -> Run | None:
    """The earliest succeeded run that trained this configuration and seed on the same images
    with the same script."""
    return (Run.select(Run.id, Run.reused_from, Run.reused_from_deleted, Run.value, Run.accuracy,
                       Run.exit_code)
            .join(Experiment)
            .where(Run.status == RunStatus.SUCCEEDED.value, Run.value.is_null(False),
                   Run.script_sha256 == script, Run.id != run.id,
                   Experiment.images_sha256 == experiment.images_sha256,
                   Experiment.objective_metric == experiment.objective_metric,
                   Run.config == run.config, Run.seed == run.seed)
            .order_by(Run.id).first())


def _link_folder(source: Path, target: Path) -> bool:
    """Hard-link the source run's folder into place (staged, then renamed); False if the
    source is gone or the target exists."""
    if not source.is_dir() or target.exists():
        return False
    staging = target.with_name(f".{target.name}-{uuid.uuid4().hex}")
    try:
        shutil.copytree(source, staging, copy_function=link_or_copy)
        os.rename(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        return False
    return True


def _take(run: Run, source: Run, script: str) -> bool:
    # Attributed to the run that trained the result, while it exists; a source whose own
    # origin was deleted holds the result itself (its folder and curve are its own).
    origin = source.id if source.reused_from is None or source.reused_from_deleted \
        else source.reused_from
    now = utcnow()
    with write_transaction():
        return _record_taken(run, source, origin, script, now)


def _record_taken(run: Run, source: Run, origin: int, script: str, now: object) -> bool:
    taken = transition(run.id, RunStatus.SUCCEEDED, actor="reuse",
                       reason=f"reused the result of run {origin}",
                       expect={RunStatus.QUEUED}, reused_from=origin, value=source.value,
                       accuracy=source.accuracy, exit_code=source.exit_code,
                       script_sha256=script, started_at=now, finished_at=now, duration_s=0.0)
    if taken:  # the source's own curve: a reused source holds a copy of its origin's
        points = RunPoint.select(RunPoint.step, RunPoint.value).where(RunPoint.run == source.id)
        rows = [{"run": run.id, "step": step, "value": value} for step, value in tuple_rows(points)]
        insert_in_batches(RunPoint, rows, ignore_conflicts=True)
    return taken


def reuse_known_results(settings: Settings, experiment_id: int) -> int:
    """Record as succeeded each queued run of this running experiment, not yet sent to a
    worker, whose result is known; how many. Called as the experiment's runs are sent, so
    a reused run starts and ends after its experiment started."""
    experiment = row_by_id(Experiment, experiment_id)
    # What its runs record as their script (execution.training): a code version, or the hash
    # of the deployment's train script
    script = None if experiment is None else (
        experiment.code_version or script_sha256(settings.train_script))
    if experiment is None or not experiment.reuse or script is None \
            or experiment.status != ExperimentStatus.RUNNING:
        return 0
    unsent = Run.select().where(Run.experiment == experiment_id, Run.nudged_at.is_null(),
                                Run.status == RunStatus.QUEUED.value)
    reused = 0
    for run in unsent:
        source = _source(experiment, run, script)
        if source is None:
            continue
        target = settings.runs_dir / str(run.id)
        if not _link_folder(settings.runs_dir / str(source.id), target):
            continue
        if _take(run, source, script):
            reused += 1
        else:  # taken meanwhile (cancelled): its folder is not needed
            shutil.rmtree(target, ignore_errors=True)
    return reused
