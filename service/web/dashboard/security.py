"""Sign-in and forgery protection for the pages.

With `SWEEPLAB_API_TOKEN` set, the pages need a sign-in: the token, typed once into a form,
becomes an HttpOnly, SameSite=Strict session cookie holding an HMAC of it (never the token).
Every form carries a per-browser token that must match a cookie of the same kind (double
submit); SameSite=Strict keeps other sites from sending either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.core.errors import ApiError
from service.web.keys import SETTINGS

SESSION_COOKIE = "sweeplab_session"
CSRF_COOKIE = "sweeplab_csrf"
CSRF_FIELD = "csrf"
CSRF_KEY = web.RequestKey("csrf_token", str)
OPEN_PATHS = ("/login", "/static/", "/healthz", "/api/", "/client/")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"sweeplab dashboard session", hashlib.sha256).hexdigest()


def signed_in(request: web.Request) -> bool:
    token = request.app[SETTINGS].api_token
    if not token:
        return True
    given = request.cookies.get(SESSION_COOKIE, "")
    return hmac.compare_digest(given.encode(), session_value(token).encode())


def set_cookie(response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", path="/")


def csrf_token(request: web.Request) -> str:
    return request.get(CSRF_KEY) or request.cookies.get(CSRF_COOKIE) or ""


async def _posted_csrf(request: web.Request) -> str:
    if request.headers.get("X-CSRF-Token"):
        return request.headers["X-CSRF-Token"]
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        return str(form.get(CSRF_FIELD, ""))
    return request.query.get(CSRF_FIELD, "")  # multipart forms carry it in their action URL


def _is_page(request: web.Request) -> bool:
    return not request.path.startswith(OPEN_PATHS)


@web.middleware
async def guard_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sign-in for pages when a token is set; a CSRF check on every page POST."""
    if not _is_page(request):
        return await handler(request)
    if not signed_in(request):
        if request.method == "GET":
            raise web.HTTPSeeOther(f"/login?next={request.path_qs}")
        raise Forbidden("sign in first")
    fresh = None
    if not request.cookies.get(CSRF_COOKIE):
        fresh = request[CSRF_KEY] = secrets.token_urlsafe(32)
    if request.method == "POST":
        expected = request.cookies.get(CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest((await _posted_csrf(request)).encode(),
                                                   expected.encode()):
            raise Forbidden("the form's anti-forgery token is missing or stale; reload the "
                            "page and try again")
    response = await handler(request)
    if fresh:
        set_cookie(response, CSRF_COOKIE, fresh)
    return response
