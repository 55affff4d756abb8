"""Errors as their client reads them: an API request's as JSON (`{"error": {"code",
"message"}}`), a dashboard page's as an HTML page saying the same; and the bearer token."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web

from service.core.errors import ApiError, Unauthorized
from service.web.keys import SETTINGS

log = logging.getLogger("sweeplab.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
              413: "too_large", 415: "unsupported_media_type"}


TITLES = {400: "That request is not right", 401: "Sign in first", 403: "Not allowed",
          404: "Not found", 405: "Not allowed", 409: "Not now", 413: "Too large",
          422: "Those values are not right", 503: "A service is unavailable"}


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/healthz", "/client/"))


def _error(request: web.Request, status: int, code: str, message: str,
           body: dict | None = None) -> web.Response:
    if not _is_api(request):  # the dashboard's pages answer with a page
        context = {"status": status, "title": TITLES.get(status, "Something went wrong"),
                   "message": message}
        return aiohttp_jinja2.render_template("error.html", request, context, status=status)
    return web.json_response(body or {"error": {"code": code, "message": message}},
                             status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return _error(request, error.status, error.code, error.message, error.body())
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = HTTP_CODES.get(error.status, "error")
        message = error.reason if error.status != 404 else f"no route for {request.path}"
        response = _error(request, error.status, code, message)
        if "Allow" in error.headers:  # a 405 names the methods the route has
            response.headers["Allow"] = error.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(request, 500, "internal", "internal error; the server log has the details")


def _bearer(request: web.Request) -> bytes:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip().encode() if scheme.lower() == "bearer" else b""


WORKER_PREFIX = "/api/v1/worker/"


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With SWEEPLAB_API_TOKEN set, every /api route needs it; /healthz stays open. The
    worker routes take the worker token instead, and only it: neither token opens the other's
    routes."""
    settings = request.app[SETTINGS]
    if request.path.startswith(WORKER_PREFIX) and settings.worker_token:
        _check(request, settings.worker_token, "SWEEPLAB_WORKER_TOKEN")
    elif settings.api_token and request.path.startswith("/api/"):
        _check(request, settings.api_token, "SWEEPLAB_API_TOKEN")
    return await handler(request)


def _check(request: web.Request, expected: str, name: str) -> None:
    # compare_digest: the time taken says nothing about how much of the token matched
    if not hmac.compare_digest(_bearer(request), expected.encode()):
        raise Unauthorized(f"missing or wrong bearer token: send 'Authorization: Bearer "
                           f"<{name}>'")
