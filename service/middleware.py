"""Every error leaves the API as JSON: `{"error": {"code", "message"}}`."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.errors import ApiError, Unauthorized
from service.keys import SETTINGS

log = logging.getLogger("sweeplab.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
              413: "too_large", 415: "unsupported_media_type"}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return web.json_response(error.body(), status=error.status)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = HTTP_CODES.get(error.status, "error")
        message = error.reason if error.status != 404 else f"no route for {request.path}"
        return _error(error.status, code, message)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "internal", "internal error; the server log has the details")


def _bearer(request: web.Request) -> bytes:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip().encode() if scheme.lower() == "bearer" else b""


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With SWEEPLAB_API_TOKEN set, every /api route needs it; /healthz stays open."""
    expected = request.app[SETTINGS].api_token
    if expected and request.path.startswith("/api/"):
        # compare_digest: the time taken says nothing about how much of the token matched
        if not hmac.compare_digest(_bearer(request), expected.encode()):
            raise Unauthorized("missing or wrong bearer token: send "
                               "'Authorization: Bearer <SWEEPLAB_API_TOKEN>'")
    return await handler(request)
