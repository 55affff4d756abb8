"""The worker registry: every worker process and what it runs, and a worker's own report."""

from __future__ import annotations

from aiohttp import web

from service.web.api.common import answer, in_db, read_json, settings_of, shared_read
from service.workers.registry import REPORT_FIELDS, list_workers, report_worker


async def list_all(request: web.Request) -> web.Response:
    settings = settings_of(request)
    workers = await shared_read(request, list_workers, settings.lease_s,
                                settings.worker_retention_s)
    return answer({"workers": workers, "lease_s": settings.lease_s})


async def report(request: web.Request) -> web.Response:
    """A worker process says it is alive, or stopped (the worker-token route)."""
    body = await read_json(request, REPORT_FIELDS)
    await in_db(request, report_worker, body, settings_of(request).worker_retention_s)
    return web.Response(status=204)
