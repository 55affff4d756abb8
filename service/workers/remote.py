"""What the API does for remote workers (blocking: the worker handlers call these in threads).

A remote worker has no database and no share of the data directory; through these it claims
runs, renews leases (sending its new log output along), hands back its run folder and records
outcomes. Every change goes through the same functions a local worker calls, guarded by the
run's status and attempt, so a late call from an attempt that was taken over changes nothing.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import Any

from service.contract import Claim, ClaimOutcome, Outcome, RunStatus
from service.core.errors import Conflict, Invalid, NotFound
from service.core.queries import row_by_id
from service.core.tables import CodeVersion, Experiment, Run
from service.execution.training import STDERR_NAME, STDOUT_NAME
from service.runs.attempts import record_outcome, requeue_attempt
from service.runs.curves import CurveFollower
from service.runs.state import aggregate_later, claim_run, heartbeat
from service.settings import Settings
from service.storage import code_in, extract_plain, plain_member_problem, remove_tree
from service.sweeps.aggregate import record_and_aggregate
from service.sweeps.pruning import keep_going as curve_keeps_going

LOG_NAMES = {"stdout": STDOUT_NAME, "stderr": STDERR_NAME}
ATTEMPT_MARK = ".sweeplab-attempt"  # in a run folder: which attempt's folder it is
_curves = CurveFollower()  # remote runs' curves, read from the output their heartbeats bring


def _existing(run_id: int) -> Run:
    run = row_by_id(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return run


def claim_for(settings: Settings, run_id: int, worker: str) -> dict[str, Any]:
    claim: Claim = claim_run(run_id, worker, settings.lease_s)
    if claim.outcome == ClaimOutcome.GONE:
        raise NotFound(f"run {run_id} does not exist")
    if claim.outcome == ClaimOutcome.CLAIMED:
        for name in LOG_NAMES.values():  # the new attempt's output starts afresh
            (settings.runs_dir / str(run_id) / name).unlink(missing_ok=True)
    return {"outcome": claim.outcome.value, "attempt": claim.attempt,
            "previous_worker": claim.previous_worker, "previous_pgid": claim.previous_pgid,
            "run": claim.spec}


def heartbeat_for(settings: Settings, run_id: int, attempt: int,
                  logs: dict[str, tuple[int, bytes]]) -> dict[str, Any]:
    """Renew the lease and append the new log output; say how much of each log is kept."""
    _existing(run_id)
    keep_going = heartbeat(run_id, attempt)
    kept = {}
    for stream, (offset, data) in logs.items():
        kept[stream] = _append_log(settings.runs_dir / str(run_id), LOG_NAMES[stream], offset,
                                   data) if keep_going else offset
    if keep_going and "stdout" in logs:
        keep_going = curve_keeps_going(_curves, run_id,
                                       settings.runs_dir / str(run_id) / STDOUT_NAME,
                                       _metric(run_id))
    return {"keep_going": keep_going, "logs": kept}


def _metric(run_id: int) -> str:
    return Experiment.select(Experiment.objective_metric).join(Run).where(
        Run.id == run_id).scalar()


def _append_log(run_dir: Path, name: str, offset: int, data: bytes) -> int:
    """Append what the API does not have yet; the size of the log afterwards."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    size = path.stat().st_size if path.exists() else 0
    if offset <= size < offset + len(data):
        with open(path, "ab") as handle:
            handle.write(data[size - offset:])
        size = offset + len(data)
    return size


def _current_attempt(run_id: int, attempt: int) -> Run:
    run = _existing(run_id)
    if run.status != RunStatus.RUNNING or run.attempts != attempt:
        raise Conflict(f"run {run_id} is {run.status} at attempt {run.attempts}; attempt "
                       f"{attempt} may no longer change it")
    return run


def check_attempt(run_id: int, attempt: int) -> None:
    """409 unless the run is running at this attempt (before a folder is even read)."""
    _current_attempt(run_id, attempt)


def fail_oversized(run_id: int, attempt: int, worker: str, limit: int) -> None:
    reason = (f"the run folder is larger than {limit} bytes "
              f"(SWEEPLAB_MAX_RUN_FOLDER_BYTES); it was not kept")
    record_outcome(run_id, attempt, worker, Outcome(RunStatus.FAILED, error=reason))


def keep_folder(settings: Settings, run_id: int, attempt: int, archive: Path | bytes) -> None:
    """Unpack a run folder sent as a tar (a file, or its bytes) and put it in place of
    `runs/<id>/`."""
    _current_attempt(run_id, attempt)
    incoming = settings.runs_dir / f".incoming-{run_id}-{uuid.uuid4().hex}"
    incoming.mkdir(parents=True)
    try:
        _unpack_folder(archive, incoming)
        (incoming / ATTEMPT_MARK).write_text(str(attempt))
        _swap_in(incoming, settings.runs_dir / str(run_id))
    finally:
        remove_tree(incoming)


def _unpack_folder(archive: Path | bytes, target: Path) -> None:
    try:
        with _open_tar(archive) as tar:
            for member in tar:
                _check_member(member)  # plain files and folders inside: safe as they are
                extract_plain(tar, member, target)
    except (tarfile.TarError, OSError) as error:
        raise Invalid(f"the run folder is not a readable tar archive: {error}",
                      field="folder") from None


def _open_tar(archive: Path | bytes) -> tarfile.TarFile:
    if isinstance(archive, bytes):
        return tarfile.open(fileobj=io.BytesIO(archive), mode="r:*")
    return tarfile.open(archive, "r:*")


def _check_member(member: tarfile.TarInfo) -> None:
    if plain_member_problem(member):
        raise Invalid(f"run folder member {member.name!r} is not a plain file or folder "
                      f"inside the folder", field="folder")


def _swap_in(incoming: Path, final: Path) -> None:
    """Replace `final` by `incoming`; readers see the old folder or the new one, whole."""
    old = final.parent / f".old-{final.name}-{uuid.uuid4().hex}"
    if final.exists():
        os.rename(final, old)
    os.rename(incoming, final)
    shutil.rmtree(old, ignore_errors=True)


def finish_for(settings: Settings, run_id: int, attempt: int, worker: str,
               outcome: Outcome) -> bool:
    """Record the outcome once this attempt's folder is on this host; False if too late."""
    run = _existing(run_id)
    mark = settings.runs_dir / str(run_id) / ATTEMPT_MARK
    if not mark.exists() or mark.read_text() != str(attempt):
        if run.attempts != attempt or run.status != RunStatus.RUNNING:
            return False
        raise Conflict(f"run {run_id}: send attempt {attempt}'s run folder before its result")
    experiment = row_by_id(Experiment, run.experiment_id)
    if experiment is not None:  # else deleted meanwhile, the run with it: no curve to keep
        _curves.finish(run_id, settings.runs_dir / str(run_id) / STDOUT_NAME,
                       experiment.objective_metric)
    return record_and_aggregate(run_id, run.experiment_id, attempt, worker, outcome,
                                inline=experiment is not None and not aggregate_later(experiment))


def keep_folder_and_finish(settings: Settings, run_id: int, attempt: int, worker: str,
                           outcome: Outcome, archive: Path | bytes) -> bool:
    """The folder and the outcome sent in one request: the folder put in place, then the
    outcome recorded, exactly as when they come one after the other."""
    keep_folder(settings, run_id, attempt, archive)
    return finish_for(settings, run_id, attempt, worker, outcome)


def requeue_for(run_id: int, attempt: int, worker: str) -> bool:
    _existing(run_id)
    return requeue_attempt(run_id, attempt, worker)


def code_files(settings: Settings, version: str) -> list[tuple[str, Path]]:
    """The files of a stored code version, as (path in the tree, file): what a remote worker
    fetches for a run that pins it. 404 when no model holds that version."""
    if not CodeVersion.select().where(CodeVersion.version == version).exists():
        raise NotFound(f"no code version {version}")
    tree = code_in(settings.code_dir, version)
    files = [(path.relative_to(tree).as_posix(), path) for path in sorted(tree.rglob("*"))
             if path.is_file() and not path.is_symlink()]
    if not files:  # its row exists but its tree does not: a worker must not get an empty one
        raise NotFound(f"code version {version} is missing from the code store")
    return files


def manifest(settings: Settings, experiment_id: int) -> list[dict[str, Any]]:
    """The experiment's frozen images: label and SHA-256 of each, as its snapshot holds them."""
    if not Experiment.select().where(Experiment.id == experiment_id).exists():
        raise NotFound(f"experiment {experiment_id} does not exist")
    root = settings.snapshots_dir / str(experiment_id)
    images = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            sha, _, extension = path.name.partition(".")
            label = path.parent.name if path.parent != root else None
            images.append({"sha256": sha, "extension": extension, "label": label})
    return images
