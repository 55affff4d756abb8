"""Experiments: create (and start), list, show, start, cancel."""

from __future__ import annotations

from aiohttp import web

from service.aggregate import aggregate_experiment
from service.broker import send_train
from service.errors import Invalid
from service.experiments import (
    back_to_created,
    cancel_experiment,
    create_experiment,
    get_experiment,
    get_model,
    mark_running,
)
from service.handlers.common import answer, in_db, path_id, publish, read_json, settings_of
from service.models import Experiment
from service.views import experiment_json


def _view(experiment_id: int) -> dict:
    return experiment_json(get_experiment(experiment_id))


def _list(model_id: int) -> list[dict]:
    get_model(model_id)
    experiments = Experiment.select().where(Experiment.model == model_id).order_by(Experiment.id)
    return [experiment_json(experiment, with_runs=False) for experiment in experiments]


def _send_all(broker: object, run_ids: list[int], timeout_s: float) -> None:
    for run_id in run_ids:
        send_train(broker, run_id, timeout_s)


async def start_experiment(request: web.Request, experiment: Experiment) -> None:
    """Queue a message per run. If the broker is down the experiment goes back to `created`
    (503), so it is never left looking started with nothing queued."""
    run_ids = await in_db(request, mark_running, experiment.id)
    try:
        await publish(request, _send_all, run_ids, experiment.timeout_s)
    except Exception:
        await in_db(request, back_to_created, experiment.id)
        raise
    # Runs may all have ended before the status said running: settle it now.
    await in_db(request, aggregate_experiment, experiment.id)


async def create(request: web.Request) -> web.Response:
    body = await read_json(request, required=False)
    start = body.get("start", True)
    if not isinstance(start, bool):
        raise Invalid("start must be true or false", field="start")
    unknown = sorted(set(body) - {"grid", "timeout_s", "start"})
    if unknown:
        raise Invalid(f"unknown fields {unknown}; allowed: grid, timeout_s, start")
    experiment = await in_db(request, create_experiment, settings_of(request),
                             path_id(request), body)
    if start:
        await start_experiment(request, experiment)
    return answer(await in_db(request, _view, experiment.id), status=201)


async def list_for_model(request: web.Request) -> web.Response:
    return answer({"experiments": await in_db(request, _list, path_id(request))})


async def show(request: web.Request) -> web.Response:
    return answer(await in_db(request, _view, path_id(request)))


async def start(request: web.Request) -> web.Response:
    experiment = await in_db(request, get_experiment, path_id(request))
    await start_experiment(request, experiment)
    return answer(await in_db(request, _view, experiment.id), status=202)


async def cancel(request: web.Request) -> web.Response:
    experiment_id = path_id(request)
    await in_db(request, cancel_experiment, experiment_id, "api")
    return answer(await in_db(request, _view, experiment_id), status=202)
