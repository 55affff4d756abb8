"""Which requests the API's access log names (`SWEEPLAB_ACCESS_LOG`).

By default every request but a read that succeeded: a dashboard or a script polling a view
several times a second would otherwise write most of the journal, and formatting and writing
that line is about a tenth of the API's CPU for each such poll. Errors and every change
(POST, PUT, PATCH, DELETE) are always named; `all` names every request, `off` none.
"""

from __future__ import annotations

from typing import Any

from aiohttp.web_log import AccessLogger

READS = frozenset({"GET", "HEAD"})
LOG_FORMAT = '%a "%r" %s %b %Tfs'


class ChangesAccessLogger(AccessLogger):
    def log(self, request: Any, response: Any, time: float) -> None:
        if request.method in READS and response.status < 400:
            return
        super().log(request, response, time)


def run_app_options(choice: str) -> dict[str, Any]:
    """The keyword arguments of `web.run_app` for this choice of access log."""
    if choice == "off":
        return {"access_log": None}
    logger_class = ChangesAccessLogger if choice == "changes" else AccessLogger
    return {"access_log_class": logger_class, "access_log_format": LOG_FORMAT}
