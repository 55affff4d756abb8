"""The worker registry: every worker process and what it runs, and a worker's own report."""

from __future__ import annotations

from aiohttp import web

from service.handlers.common import answer, in_db, read_json, settings_of, shared_read
from service.workers import REPORT_KEYS, list_workers, report_worker


async def list_all(request: web.Request) -> web.Response:
    lease_s = settings_of(request).lease_s
    workers = await shared_read(request, list_workers, lease_s)
    return answer({"workers": workers, "lease_s": lease_s})


async def report(request: web.Request) -> web.Response:
    """A worker process says it is alive (the worker-token route)."""
    body = await read_json(request, REPORT_KEYS)
    await in_db(request, report_worker, body)
    return web.Response(status=204)
