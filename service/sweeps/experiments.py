"""Experiments and models as the API changes them (blocking: the handlers call these in threads)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from service.contract import GRID, ExperimentStatus, RunStatus
from service.core.db import write_transaction
from service.core.errors import Conflict, Invalid
from service.core.lookup import current_code, get_experiment, get_model
from service.core.queries import tuple_rows
from service.core.tables import CodeVersion, Experiment, Image, ModelImage, Run
from service.core.timeutil import utcnow
from service.runs.state import cancel_queued, transition
from service.settings import Settings
from service.storage import image_path, staged_snapshot
from service.sweeps.aggregate import aggregate_experiment
from service.sweeps.reuse import images_sha256
from service.sweeps.space import (
    check_run_count,
    validate_early_stopping,
    validate_reuse,
    validate_search,
    validate_space,
)
from service.sweeps.statistics import validate_objective, validate_repeats
from service.sweeps.trials import add_runs, first_points


def _timeout(settings: Settings, raw: Any) -> float:
    if raw is None:
        return settings.run_timeout_s
    ok = isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw)
    if not ok or raw <= 0:
        raise Invalid("timeout_s must be a number of seconds > 0", field="timeout_s")
    if raw > settings.max_run_timeout_s:
        raise Invalid(f"timeout_s {raw:g} is above the deployment's limit of "
                      f"{settings.max_run_timeout_s:g} s (SWEEPLAB_MAX_RUN_TIMEOUT_S)",
                      field="timeout_s")
    return float(raw)


def _training_images(settings: Settings, model_id: int) -> list[tuple[Path, str | None]]:
    rows = tuple_rows(ModelImage.select(ModelImage.label, Image.sha256, Image.extension)
                      .join(Image).where(ModelImage.model == model_id))
    return [(image_path(settings, sha, ext), label) for label, sha, ext in rows]


def _content_hash(images: list[tuple[Path, str | None]]) -> str:
    return images_sha256([(path.stem, label) for path, label in images])  # stem: its SHA-256


def _code_defaults(code: CodeVersion | None, body: dict[str, Any]
                   ) -> tuple[dict[str, Any] | None, Any]:
    """With the model's own code: its sweeplab.toml's grid as the default grid (none: the body
    must give one), and its objective when the body gives none."""
    if code is None:
        return None, body.get("objective")
    defaults = code.defaults or {}
    if "grid" not in defaults and not body.get("grid"):
        raise Invalid(f"grid is required: the model's code ({code.version[:12]}) gives no "
                      f"default grid in its sweeplab.toml", field="grid")
    objective = body.get("objective")
    if objective is None and ("metric" in defaults or "minimize" in defaults):
        objective = {"metric": defaults.get("metric", "accuracy"),
                     "direction": "minimize" if defaults.get("minimize") else "maximize"}
    return defaults.get("grid", {}), objective


def _validated(settings: Settings, body: dict[str, Any],
               code: CodeVersion | None) -> dict[str, Any]:
    """The body's fields checked, with the code's defaults: the experiment's columns."""
    default_grid, objective = _code_defaults(code, body)
    search = validate_search(body.get("search"), settings.max_grid_points)
    # the model's own code names its own flags: the assignment's i/j/k rules are not for it
    space = validate_space(body.get("grid"), search["strategy"], settings.max_grid_points,
                           default_grid, rules=None if code is None else {})
    metric, direction = validate_objective(objective)
    repeats = validate_repeats(body.get("repeats"))
    check_run_count(search, space, repeats, settings.max_grid_points)
    return {"grid": space, "timeout_s": _timeout(settings, body.get("timeout_s")),
            "objective_metric": metric, "objective_direction": direction,
            "repeats": repeats, "search": None if search["strategy"] == GRID else search,
            "early_stopping": validate_early_stopping(body.get("early_stopping")),
            "reuse": validate_reuse(body.get("reuse")),
            "code_version": None if code is None else code.version}


def create_experiment(settings: Settings, model_id: int, body: dict[str, Any]) -> Experiment:
    """Validate the body, freeze the model's images as a snapshot, pin the model's current
    code, and add one run per configuration and seed (a TPE search adds its first `parallel`
    configurations): one transaction, with the snapshot renamed into place inside it, so
    nothing is half-made. Known results are taken when it starts, not before (see
    dispatch.publish_experiment)."""
    get_model(model_id)
    _validated(settings, body, current_code(model_id))  # a 422 before any snapshot is made
    images = _training_images(settings, model_id)
    if not images:
        raise Conflict(f"model {model_id} has no images yet; upload training images first")
    with staged_snapshot(settings, images) as place_snapshot, write_transaction():
        get_model(model_id, for_update=True)  # deleted meanwhile: 404, nothing made
        # checked again with the code current now: an upload since then is what is pinned
        fields = _validated(settings, body, current_code(model_id))
        experiment = Experiment.create(model=model_id, image_count=len(images),
                                       images_sha256=_content_hash(images), **fields)
        add_runs(experiment, first_points(experiment), first_trial=0)
        place_snapshot(experiment.id)  # last: a failure before it leaves no folder behind
    return experiment


def mark_running(experiment_id: int) -> None:
    """Move a created experiment to running, its messages still to send. 409 if not `created`."""
    with write_transaction():
        experiment = get_experiment(experiment_id)
        if experiment.status != ExperimentStatus.CREATED:
            raise Conflict(f"experiment {experiment_id} is {experiment.status}; "
                           f"only a created experiment can be started")
        Experiment.update(status=ExperimentStatus.RUNNING.value, started_at=utcnow(),
                          unpublished=True).where(Experiment.id == experiment_id).execute()


def retry_experiment(experiment_id: int, actor: str) -> int:
    """Queue again the runs that failed or were cancelled; return how many."""
    with write_transaction():
        experiment = get_experiment(experiment_id)
        if experiment.status == ExperimentStatus.CREATED:
            raise Conflict(f"experiment {experiment_id} has not started; start it instead")
        again = [RunStatus.FAILED.value, RunStatus.CANCELLED.value]
        runs = Run.select(Run.id).where(Run.experiment == experiment_id, Run.status.in_(again))
        moved = sum(transition(run.id, RunStatus.QUEUED, actor=actor, reason="retry",
                               expect={RunStatus.FAILED, RunStatus.CANCELLED},
                               finished_at=None, nudged_at=None)
                    for run in runs)
        if not moved:
            raise Conflict(f"experiment {experiment_id} has no failed or cancelled runs")
        # An experiment cancelled before it ever started starts now.
        Experiment.update(status=ExperimentStatus.RUNNING.value, finished_at=None,
                          started_at=experiment.started_at or utcnow(),
                          unpublished=True).where(Experiment.id == experiment_id).execute()
    return moved


def cancel_experiment(experiment_id: int, actor: str) -> Experiment:
    """Cancel its queued runs at once and its running ones one by one (a running run's worker
    sees this at its next heartbeat and kills the script). A message still in the queue for a
    cancelled run starts nothing: its claim finds the run ended.

    Runs first, the experiment's row last: a worker recording a result locks its run, then the
    experiment's row (to aggregate), and taking them in the other order deadlocked on
    PostgreSQL. The row's update is conditional instead of locked ahead: an experiment that
    ended meanwhile is a 409 and nothing is changed."""
    reason = "cancelled by user"
    ended = [ExperimentStatus.COMPLETED.value, ExperimentStatus.FAILED.value]
    with write_transaction():
        experiment = get_experiment(experiment_id)
        if experiment.status in ended:
            raise Conflict(f"experiment {experiment_id} has already ended ({experiment.status})")
        cancel_queued(experiment_id, actor, reason)
        running = Run.select(Run.id).where(Run.experiment == experiment_id,
                                           Run.status == RunStatus.RUNNING.value)
        for run in running:
            transition(run.id, RunStatus.CANCELLED, actor=actor, reason=reason,
                       expect={RunStatus.QUEUED, RunStatus.RUNNING}, finished_at=utcnow())
        changed = Experiment.update(status=ExperimentStatus.CANCELLED.value,
                                    finished_at=utcnow()).where(
            Experiment.id == experiment_id, Experiment.status.not_in(ended)).execute()
        if not changed:  # ended (or deleted) since it was read: undo the runs' changes too
            raise Conflict(f"experiment {experiment_id} has already ended")
    aggregate_experiment(experiment_id)
    return get_experiment(experiment_id)
