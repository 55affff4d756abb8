"""Health and the API's own description."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from service.core.db import ping
from service.web.api.common import answer, in_db, settings_of
from service.web.keys import BROKER_PROBE
from service.web.openapi_doc import served_document

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


async def _database_ok(request: web.Request) -> bool:
    try:
        await in_db(request, ping)
    except Exception:  # whatever the driver raises, the answer is "down"
        return False
    return True


async def healthz(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    broker = await loop.run_in_executor(None, request.app[BROKER_PROBE].reachable)
    database = await _database_ok(request)
    body = {"status": "ok" if broker and database else "unavailable",
            "database": "ok" if database else "down",
            "broker": "ok" if broker else "down"}
    return answer(body, status=200 if broker and database else 503)


@cache
def openapi_document() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI_PATH.read_text())


async def openapi(request: web.Request) -> web.Response:
    return answer(served_document(openapi_document(), settings_of(request)))
