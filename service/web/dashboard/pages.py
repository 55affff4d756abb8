"""Page handlers: thin — gather the page's data in a DB thread, render its template."""

from __future__ import annotations

import hmac
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from service.web.api.common import in_db, path_id, settings_of
from service.web.dashboard import data
from service.web.dashboard.security import SESSION_COOKIE, session_value, set_cookie, signed_in
from service.workers.registry import list_workers

LIVE_TEMPLATES = {"experiment": "_experiment_live.html", "run": "_run_live.html"}


def render(request: web.Request, template: str, context: dict[str, Any],
           status: int = 200) -> web.Response:
    return aiohttp_jinja2.render_template(template, request, context, status=status)


async def index(request: web.Request) -> web.Response:
    return render(request, "index.html", {"models": await in_db(request, data.models_page)})


async def model(request: web.Request) -> web.Response:
    context = await in_db(request, data.model_page, path_id(request))
    return render(request, "model.html", {**context, "notice": request.query.get("notice")})


async def thumbnail(request: web.Request) -> web.StreamResponse:
    sha = request.match_info["sha"]
    path = await in_db(request, data.thumbnail_file, settings_of(request), path_id(request), sha)
    if path is None or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "max-age=86400, immutable"})


def _experiment_query(request: web.Request) -> tuple[Any, ...]:
    """sort, descending, the heatmap's axes, and (a large experiment's runs table) the page's
    cursor and the state it shows."""
    query = request.query
    return (query.get("sort", "id"), query.get("dir") == "desc", query.get("x"), query.get("y"),
            query.get("after") or None, query.get("status") or None)


async def experiment(request: web.Request) -> web.Response:
    context = await in_db(request, data.experiment_page, path_id(request),
                          *_experiment_query(request))
    return render(request, "experiment.html", {**context, "notice": request.query.get("notice")})


async def experiment_live(request: web.Request) -> web.Response:
    context = await in_db(request, data.experiment_page, path_id(request),
                          *_experiment_query(request))
    return render(request, LIVE_TEMPLATES["experiment"], context)


async def experiment_csv(request: web.Request) -> web.Response:
    experiment_id = path_id(request)
    text = await in_db(request, data.experiment_csv, experiment_id)
    disposition = f'attachment; filename="experiment-{experiment_id}-runs.csv"'
    return web.Response(text=text, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": disposition})


async def run(request: web.Request) -> web.Response:
    context = await in_db(request, data.run_page, settings_of(request), path_id(request))
    return render(request, "run.html", context)


async def run_live(request: web.Request) -> web.Response:
    context = await in_db(request, data.run_page, settings_of(request), path_id(request))
    return render(request, LIVE_TEMPLATES["run"], context)


async def workers(request: web.Request) -> web.Response:
    settings = settings_of(request)
    listed = await in_db(request, list_workers, settings.lease_s, settings.worker_retention_s)
    return render(request, "workers.html", {"workers": listed, "lease_s": settings.lease_s,
                                            "retention_s": settings.worker_retention_s})


async def login_form(request: web.Request) -> web.Response:
    if signed_in(request):
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    return render(request, "login.html", {"next": request.query.get("next", "/")})


def _safe_next(target: str | None) -> str:
    """Only a local path: a sign-in never sends the browser to another site."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    token = settings_of(request).api_token
    given = str(form.get("token", ""))
    target = _safe_next(str(form.get("next", "/")))
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        return render(request, "login.html", {"next": target, "failed": True}, status=401)
    response = web.HTTPSeeOther(target)
    set_cookie(response, SESSION_COOKIE, session_value(token))
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response
