"""What every handler needs: running blocking work off the loop, reading JSON, answering."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeVar

from aiohttp import web

from service.core.db import database, is_sqlite
from service.core.errors import (
    BadRequest,
    Invalid,
    TooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from service.dispatch.broker import BrokerUnavailable
from service.settings import Settings
from service.web.keys import BROKER, DB_EXECUTOR, PUBLISH_EXECUTOR, SETTINGS

T = TypeVar("T")
MAX_JSON_BYTES = 1 << 20


def refuse_unknown_query(request: web.Request, *known: str) -> None:
    """A 422 naming a query parameter the route does not take: a misspelt filter
    (`?statuss=failed`) must not answer as if none were given."""
    for name in request.query:
        if name not in known:
            takes = ", ".join(known) if known else "none"
            raise Invalid(f"unknown query parameter {name!r} (this route takes: {takes})",
                          field=name or "query")


def _connected(function: Callable[..., T], *args: Any) -> T:
    database.connect(reuse_if_open=True)  # one connection per pool thread, kept open
    return function(*args)


async def in_db(request: web.Request, function: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[DB_EXECUTOR], partial(_connected, function,
                                                                         *args))


_in_flight: dict[tuple[Any, ...], asyncio.Future[Any]] = {}


async def shared_read(request: web.Request, function: Callable[..., T], *args: Any) -> T:
    """Like `in_db` for a read, but identical reads already under way are joined, not repeated.

    Clients poll the same few views; under load most arrive while the same query is running.
    A joined read began at most one query's time before the request did: no staler than a
    reply already on its way, and it saves a thread hop and the queries."""
    key = (function, *args)
    running = _in_flight.get(key)
    if running is not None:
        return await asyncio.shield(running)
    future: asyncio.Future[T] = asyncio.ensure_future(in_db(request, function, *args))
    _in_flight[key] = future
    future.add_done_callback(lambda _: _in_flight.pop(key, None))
    return await asyncio.shield(future)


def quick_read(function: Callable[..., T], *args: Any) -> T | None:
    """A read of a few microseconds, on the event loop itself when the database is SQLite.

    A poll that finds its view unchanged costs two small queries; the hop to a pool thread
    and back costs several times more CPU than they do (measured: 2.1 ms a poll with the hop,
    1.5 ms without, for a client polling 20 times a second). An SQLite read never waits on a
    writer (WAL), so it does not stall the loop; a database across the network does: there
    the answer is None and the caller takes its usual path through a thread."""
    if not is_sqlite():
        return None
    return _connected(function, *args)


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


async def read_json(request: web.Request, allowed: Iterable[str],
                    required: bool = True) -> dict[str, Any]:
    """The whole JSON object body, the one rule for every JSON route: 413 past the limit
    (before reading, when the length is declared), 415 for a body that is not JSON, 400 for
    broken JSON, 422 naming unknown keys."""
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise TooLarge(f"JSON body larger than {MAX_JSON_BYTES} bytes")
    raw = await _whole_body(request)
    if not raw.strip():
        if required:
            raise BadRequest("expected a JSON object body")
        return {}
    if request.content_type != "application/json":
        raise UnsupportedMediaType(f"send the body as JSON with 'Content-Type: "
                                   f"application/json', not {request.content_type!r}")
    return json_object(raw, allowed)


def json_object(raw: bytes, allowed: Iterable[str]) -> dict[str, Any]:
    """`raw` as a JSON object: 400 for broken JSON or another type, 422 naming unknown keys."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the JSON body must be an object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Invalid(f"unknown fields {unknown}; allowed: {', '.join(allowed)}",
                      field=unknown[0])
    return body


async def _whole_body(request: web.Request) -> bytes:
    """Every byte of the body, however many chunks it arrives in; 413 past the limit."""
    body = bytearray()
    while chunk := await request.content.read(1 << 16):
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise TooLarge(f"JSON body larger than {MAX_JSON_BYTES} bytes")
    return bytes(body)


def answer(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)
