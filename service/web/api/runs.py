"""Runs: one run's result, and what its script printed so far."""

from __future__ import annotations

from aiohttp import web

from service.core.lookup import get_run
from service.execution.training import STDERR_NAME, STDOUT_NAME, read_tail
from service.runs.curves import curve_json
from service.web.api.common import answer, in_db, path_id, settings_of
from service.web.views import run_json

LOG_LIMIT = 1 << 20  # the last MiB of each stream: enough to read, never the whole of a huge log


def _view(run_id: int) -> dict:
    return run_json(get_run(run_id))


async def show(request: web.Request) -> web.Response:
    return answer(await in_db(request, _view, path_id(request)))


def _log_text(request: web.Request, run_id: int) -> str:
    get_run(run_id)
    run_dir = settings_of(request).runs_dir / str(run_id)
    stdout = read_tail(run_dir / STDOUT_NAME, LOG_LIMIT)
    stderr = read_tail(run_dir / STDERR_NAME, LOG_LIMIT)
    if not stderr:
        return stdout
    separator = "" if not stdout or stdout.endswith("\n") else "\n"
    return f"{stdout}{separator}--- stderr ---\n{stderr}"


async def logs(request: web.Request) -> web.Response:
    text = await in_db(request, _log_text, request, path_id(request))
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


def _curve(run_id: int) -> dict:
    run = get_run(run_id)
    return {"run_id": run_id, "metric": run.experiment.objective_metric,
            "points": curve_json(run_id)}


async def metrics(request: web.Request) -> web.Response:
    """The run's learning curve: the (step, value) points of its objective it printed."""
    return answer(await in_db(request, _curve, path_id(request)))
