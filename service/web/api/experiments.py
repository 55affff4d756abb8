"""Experiments: create (and start), list, show, start, cancel, retry, delete."""

from __future__ import annotations

from aiohttp import web

from service.core.errors import Invalid, Unavailable
from service.core.lookup import get_experiment, get_model
from service.core.tables import Experiment
from service.dispatch.publish import publish_experiment
from service.sweeps.experiments import (
    cancel_experiment,
    create_experiment,
    mark_running,
    retry_experiment,
)
from service.sweeps.removal import delete_experiment
from service.web.api.common import (
    answer,
    in_db,
    path_id,
    publish,
    quick_read,
    read_json,
    refuse_unknown_query,
    settings_of,
    shared_read,
)
from service.web.runpages import page_params, runs_page
from service.web.viewcache import experiment_view_bytes, kept_view_bytes
from service.web.views import experiment_json

EXPERIMENT_FIELDS = ("grid", "timeout_s", "start", "objective", "repeats", "search",
                     "early_stopping", "reuse")


def _view(experiment_id: int) -> dict:
    return experiment_json(get_experiment(experiment_id))


def _list(model_id: int) -> list[dict]:
    get_model(model_id)
    experiments = Experiment.select().where(Experiment.model == model_id).order_by(Experiment.id)
    return [experiment_json(experiment, with_runs=False) for experiment in experiments]


async def send_queued_runs(request: web.Request, experiment_id: int) -> None:
    """Send the queued runs' messages. If RabbitMQ is down: 503, and the reconciler sends
    them once it is back; the experiment is never left silently stuck."""
    try:
        await publish(request, publish_experiment, experiment_id, settings_of(request))
    except Unavailable as error:
        raise Unavailable(f"{error.message}. Experiment {experiment_id} is saved; its runs "
                          f"will be queued automatically when RabbitMQ is back",
                          extra={"experiment_id": experiment_id}) from None


async def start_experiment(request: web.Request, experiment_id: int) -> None:
    """Move a created experiment to running (409 otherwise) and send its runs."""
    await in_db(request, mark_running, experiment_id)
    await send_queued_runs(request, experiment_id)


async def create(request: web.Request) -> web.Response:
    body = await read_json(request, EXPERIMENT_FIELDS, required=False)
    start = body.get("start", True)
    if not isinstance(start, bool):
        raise Invalid("start must be true or false", field="start")
    experiment = await in_db(request, create_experiment, settings_of(request),
                             path_id(request), body)
    if start:
        await start_experiment(request, experiment.id)
    return answer(await in_db(request, _view, experiment.id), status=201)


async def list_for_model(request: web.Request) -> web.Response:
    return answer({"experiments": await in_db(request, _list, path_id(request))})


async def show(request: web.Request) -> web.Response:
    experiment_id = path_id(request)
    body = quick_read(kept_view_bytes, experiment_id) or await shared_read(
        request, experiment_view_bytes, experiment_id)
    return web.Response(body=body, content_type="application/json")


def _page(experiment_id: int, limit: int, status: str | None, sort: str,
          key: list | None) -> dict:
    return runs_page(get_experiment(experiment_id), limit, status, sort, key)


async def runs(request: web.Request) -> web.Response:
    """One page of the experiment's runs: `{"runs": [...], "next": cursor | null}`."""
    experiment_id = path_id(request)
    refuse_unknown_query(request, "limit", "after", "status", "sort")
    limit, status, sort, key = page_params(request.query)
    return answer(await in_db(request, _page, experiment_id, limit, status, sort, key))


async def start(request: web.Request) -> web.Response:
    experiment_id = path_id(request)
    await start_experiment(request, experiment_id)
    return answer(await in_db(request, _view, experiment_id), status=202)


async def retry(request: web.Request) -> web.Response:
    experiment_id = path_id(request)
    await in_db(request, retry_experiment, experiment_id, "api")
    await send_queued_runs(request, experiment_id)
    return answer(await in_db(request, _view, experiment_id), status=202)


async def delete(request: web.Request) -> web.Response:
    await in_db(request, delete_experiment, settings_of(request), path_id(request))
    return web.Response(status=204)


async def cancel(request: web.Request) -> web.Response:
    experiment_id = path_id(request)
    await in_db(request, cancel_experiment, experiment_id, "api")
    return answer(await in_db(request, _view, experiment_id), status=202)
