"""Documentation is tested: settings, routes and units say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from service.app import create_app
from service.settings import DEFAULTS
from service.web.api.health import openapi_document
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def app_routes() -> set[tuple[str, str]]:
    app = create_app(make_settings(Path("/nonexistent")))
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = re.sub(r"\{(\w+):[^}]*\}\}?", r"{\1}", route.resource.canonical)
        if path.startswith(("/api/", "/healthz")):  # the API; the dashboard's pages are not
            routes.add((route.method, path))
    return routes


def openapi_routes() -> set[tuple[str, str]]:
    return {(method.upper(), path)
            for path, item in openapi_document()["paths"].items()
            for method in item if method != "parameters"}


def test_openapi_describes_exactly_the_registered_routes():
    assert openapi_routes() == app_routes()


def test_readme_has_a_section_per_route():
    headings = set(re.findall(r"^### `(GET|POST|DELETE|PUT|PATCH) (\S+)`", README, re.M))
    assert headings == app_routes()


def test_every_setting_is_documented_and_every_documented_setting_exists():
    code = "\n".join(path.read_text() for folder in ("service", "actors")
                     for path in (ROOT / folder).rglob("*.py"))
    used = set(re.findall(r"SWEEPLAB_[A-Z_]+", code))
    documented = set(re.findall(r"^\| `(SWEEPLAB_[A-Z_]+)`", README, re.M))
    assert documented == set(DEFAULTS)
    given_to_scripts = {"SWEEPLAB_RUN_ID", "SWEEPLAB_SEED", "SWEEPLAB_PARAMS"}
    assert used <= set(DEFAULTS) | given_to_scripts


def test_readme_has_exactly_the_two_commands_and_ci_runs_the_test_one():
    quick_start = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]
    assert "exec scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


# The units, the drop-ins and provision.sh are checked in tests/test_provision.py.


def test_rabbitmq_snippet_keeps_consumer_timeout_above_the_longest_run():
    snippet = (ROOT / "systemd" / "rabbitmq-sweeplab.conf").read_text()
    timeout_ms = int(re.search(r"^consumer_timeout = (\d+)", snippet, re.M).group(1))
    env = (ROOT / "systemd" / "sweeplab.env").read_text()
    longest_s = float(re.search(r"^SWEEPLAB_MAX_RUN_TIMEOUT_S=(\d+)", env, re.M).group(1))
    assert timeout_ms > (longest_s + 120) * 1000
