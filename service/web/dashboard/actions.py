"""What the pages' forms do: the same functions the API calls, answered with a redirect."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from service.catalog import create_model
from service.core.errors import ApiError
from service.sweeps.experiments import (
    cancel_experiment,
    create_experiment,
    retry_experiment,
)
from service.web.api.common import in_db, path_id, settings_of
from service.web.api.experiments import send_queued_runs, start_experiment
from service.web.api.models import ingest_upload, predict_upload
from service.web.dashboard import data
from service.web.dashboard.pages import render
from service.web.dashboard.sweepform import error_context, experiment_body


def _redirect(location: str, notice: str | None = None) -> web.HTTPSeeOther:
    suffix = f"?notice={quote(notice)}" if notice else ""
    return web.HTTPSeeOther(location + suffix)


async def create(request: web.Request) -> web.Response:
    form = await request.post()
    body = {"name": str(form.get("name", "")), "description": str(form.get("description", ""))}
    model = await in_db(request, create_model, body)
    raise _redirect(f"/models/{model.id}", f"Model {model.name!r} created")


async def upload(request: web.Request) -> web.Response:
    model_id = path_id(request)
    result = await ingest_upload(request, model_id)
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(result, status=201)  # the page's progress-bar upload
    raise _redirect(f"/models/{model_id}", f"{result['added']} image(s) added, "
                    f"{result['duplicates']} already there, {len(result['rejected'])} refused")


async def new_experiment(request: web.Request) -> web.Response:
    """The sweep form: the API's experiment body through the API's creation, then started.
    A mistake shows the model page again with the API's message and what was typed."""
    form = await request.post()
    model_id = path_id(request)
    try:
        experiment = await in_db(request, create_experiment, settings_of(request), model_id,
                                 experiment_body(form))
    except ApiError as error:
        context = await in_db(request, data.model_page, model_id)
        return render(request, "model.html", {**context, **error_context(error, form)},
                      status=error.status)
    await start_experiment(request, experiment.id)
    raise _redirect(f"/experiments/{experiment.id}", "Sweep started")


async def start(request: web.Request) -> web.Response:
    experiment_id = path_id(request)
    await start_experiment(request, experiment_id)
    raise _redirect(f"/experiments/{experiment_id}", "Sweep started")


async def cancel(request: web.Request) -> web.Response:
    experiment_id = path_id(request)
    await in_db(request, cancel_experiment, experiment_id, "dashboard")
    raise _redirect(f"/experiments/{experiment_id}", "Sweep cancelled")


async def retry(request: web.Request) -> web.Response:
    experiment_id = path_id(request)
    moved = await in_db(request, retry_experiment, experiment_id, "dashboard")
    await send_queued_runs(request, experiment_id)
    raise _redirect(f"/experiments/{experiment_id}", f"{moved} run(s) queued again")


async def predict(request: web.Request) -> web.Response:
    model_id = path_id(request)
    result, preview = await predict_upload(request, model_id)
    context = await in_db(request, data.model_page, model_id)
    return render(request, "model.html", {**context, "prediction": result, "preview": preview})
