"""The API's access log names changes and errors, and successful reads only when asked to."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from service.settings import SettingsError, load_settings
from service.web.accesslog import run_app_options


def logged(choice: str, method: str, status: int, caplog: pytest.LogCaptureFixture) -> bool:
    options = run_app_options(choice)
    if options.get("access_log", True) is None:
        return False
    logger = logging.getLogger(f"test.access.{choice}")
    access = options["access_log_class"](logger, options["access_log_format"])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=logger.name):
        access.log(make_mocked_request(method, "/api/v1/experiments/1"),
                   web.Response(status=status), 0.001)
    return any("/api/v1/experiments/1" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("method, status, changes, every", [
    ("GET", 200, False, True),  # a poll
    ("HEAD", 304, False, True),
    ("GET", 404, True, True),  # an error is always named
    ("POST", 201, True, True),  # and every change
    ("DELETE", 204, True, True),
    ("PUT", 409, True, True),
])
def test_which_requests_each_choice_names(method, status, changes, every, caplog):
    assert logged("changes", method, status, caplog) is changes
    assert logged("all", method, status, caplog) is every
    assert logged("off", method, status, caplog) is False


def test_the_default_names_changes_and_a_bad_choice_is_refused(tmp_path):
    assert load_settings({"SWEEPLAB_DATA_DIR": str(tmp_path)}).access_log == "changes"
    with pytest.raises(SettingsError, match="SWEEPLAB_ACCESS_LOG must be one of changes, all"):
        load_settings({"SWEEPLAB_DATA_DIR": str(tmp_path), "SWEEPLAB_ACCESS_LOG": "verbose"})
