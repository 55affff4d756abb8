"""One HTTP session to the service: the bearer token on every request, the API's JSON errors
raised as ApiError, and a server that cannot be reached as ConnectionFailed."""

from __future__ import annotations

from typing import Any

import httpx

API = "/api/v1"


class ApiError(Exception):
    """An answer of 400 or more: the API's `{"error": {"code", "message", "field"?}}`."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.body = body or {}


class ConnectionFailed(Exception):
    """The server did not answer at all (refused, unknown host, timed out)."""


def _error_of(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        error = body["error"]
        return ApiError(response.status_code, str(error.get("code", "error")),
                        str(error.get("message", "")), error.get("field"), body)
    except (ValueError, KeyError, TypeError, AttributeError):
        # not the API's JSON (a proxy's page, a server of another kind): its first line
        text = response.text.strip().splitlines()
        return ApiError(response.status_code, "http_error",
                        text[0][:200] if text else response.reason_phrase)


class Session:
    """Requests to one server with one token, over one kept connection pool."""

    def __init__(self, url: str, token: str | None, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers,
                                  timeout=httpx.Timeout(timeout, connect=10.0))

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response to `method path` (path under the server's root), or the error raised."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            reason = str(error) or type(error).__name__
            raise ConnectionFailed(f"cannot reach {self.url}: {reason}") from error
        if response.status_code >= 400:
            raise _error_of(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    def close(self) -> None:
        self._http.close()
