"""Health and the API's own description."""

from __future__ import annotations

import asyncio
from functools import cache
from pathlib import Path
from typing import Any

import pika
import yaml
from aiohttp import web

from service.db import ping
from service.handlers.common import answer, in_db, settings_of

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"


def _broker_ok(url: str) -> bool:
    if url.startswith("stub://"):
        return True
    parameters = pika.URLParameters(url)
    parameters.socket_timeout = 2
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
    except pika.exceptions.AMQPError:
        return False
    return True


async def _database_ok(request: web.Request) -> bool:
    try:
        await in_db(request, ping)
    except Exception:  # whatever the driver raises, the answer is "down"
        return False
    return True


async def healthz(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    broker = await loop.run_in_executor(None, _broker_ok, settings_of(request).broker_url)
    database = await _database_ok(request)
    body = {"status": "ok" if broker and database else "unavailable",
            "database": "ok" if database else "down",
            "broker": "ok" if broker else "down"}
    return answer(body, status=200 if broker and database else 503)


@cache
def openapi_document() -> dict[str, Any]:
    return yaml.safe_load(OPENAPI_PATH.read_text())


async def openapi(request: web.Request) -> web.Response:
    return answer(openapi_document())
