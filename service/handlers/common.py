"""What every handler needs: running blocking work off the loop, reading JSON, answering."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from aiohttp import web

from service.broker import BrokerUnavailable
from service.db import database
from service.errors import BadRequest, Unavailable
from service.keys import BROKER, DB_EXECUTOR, PUBLISH_EXECUTOR, SETTINGS
from service.settings import Settings

T = TypeVar("T")
MAX_JSON_BYTES = 1 << 20


def _connected(function: Callable[..., T], *args: Any) -> T:
    database.connect(reuse_if_open=True)  # one connection per pool thread, kept open
    return function(*args)


async def in_db(request: web.Request, function: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[DB_EXECUTOR], partial(_connected, function,
                                                                         *args))


async def publish(request: web.Request, function: Callable[..., T], *args: Any) -> T:
    """Run a publishing function with the broker in the publisher thread; 503 if it is down."""
    loop = asyncio.get_running_loop()
    call = partial(_connected, function, request.app[BROKER], *args)
    try:
        return await loop.run_in_executor(request.app[PUBLISH_EXECUTOR], call)
    except BrokerUnavailable as error:
        raise Unavailable(str(error)) from None


def settings_of(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def path_id(request: web.Request, name: str = "id") -> int:
    return int(request.match_info[name])


async def read_json(request: web.Request, required: bool = True) -> dict[str, Any]:
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise BadRequest(f"JSON body larger than {MAX_JSON_BYTES} bytes")
    if not raw.strip():
        if required:
            raise BadRequest("expected a JSON object body")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object")
    return body


def answer(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)
