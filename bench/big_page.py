"""The experiment page of a 10,000-run experiment under way (issue 24): its render time and
the live fragment's (the part the page polls every 1.5 s) with their sizes, against the
target of under 1 s. The runs are created by the API, then given their results as rows (the
shared tests.helpers.finish_at_random: statuses, values with ties, a 5-point curve each, the
statistics by the repair path), as a sweep under way leaves them. On SQLite (the default
stack); `python -m bench.big_page POINTS [DATABASE_URL]` for another size or PostgreSQL.
Printed as figures; nothing here is asserted by the test suite."""

from __future__ import annotations

import sys
import time
import urllib.request

from bench.big import grid_of, scratch_postgres
from bench.common import Result, cpu_seconds, percentile, running_stack
from service.core.db import database, open_database
from tests.e2e_support import Stack
from tests.helpers import finish_at_random

GETS = 10
TARGET_S = 1.0


def _get(stack: Stack, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(stack.base + path) as response:
        body = response.read()
    return time.perf_counter() - started, len(body)


def timed(stack: Stack, path: str) -> tuple[float, float, int]:
    """p50 in seconds over GETS requests (after one to warm up), the API's mean CPU seconds
    per request (what a loaded machine inflates less than the wall time), and the size."""
    assert stack.api is not None
    _get(stack, path)
    cpu = cpu_seconds(stack.api.pid)
    gets = [_get(stack, path) for _ in range(GETS)]
    cpu = (cpu_seconds(stack.api.pid) - cpu) / GETS
    return percentile([seconds for seconds, _ in gets], 0.5), cpu, gets[-1][1]


def build(stack: Stack, points: int, database_url: str) -> int:
    """A `points`-run experiment, created by the API, its results written as rows."""
    status, created = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                    {"grid": grid_of(points), "start": False, "reuse": False})
    assert status == 201, created
    open_database(database_url)
    try:
        finish_at_random(created["id"])
    finally:
        database.close()
    return int(created["id"])


def measure(stack: Stack, points: int, database_url: str) -> list[Result]:
    experiment_id = build(stack, points, database_url)
    page = f"/experiments/{experiment_id}"
    results = []
    for what, path in (("page", page), ("page sorted by value", f"{page}?sort=value"),
                       ("live fragment", f"{page}/live")):
        p50, cpu, size = timed(stack, path)
        results.append(Result(f"big page: the {points}-run experiment's {what}",
                              f"p50 {p50 * 1000:.0f} ms over {GETS} (API CPU "
                              f"{cpu * 1000:.0f} ms a request), {size / 1024:.0f} KB",
                              f"< {TARGET_S:g} s", p50 < TARGET_S))
    return results


def run(points: int = 10000, database_url: str | None = None) -> list[Result]:
    env = {"SWEEPLAB_MAX_GRID_POINTS": str(max(points, 20000))}
    if database_url:
        env["SWEEPLAB_DATABASE_URL"] = database_url
    with running_stack(threads=1, **env) as stack:
        url = database_url or f"sqlite:///{stack.data_dir / 'sweeplab.db'}"
        results = measure(stack, points, url)
    for result in results:
        print(result.line(), flush=True)
    return results


def run_both(points: int = 10000) -> list[Result]:
    """The figures on SQLite, then on a scratch PostgreSQL database."""
    results = run(points)
    with scratch_postgres() as url:
        postgres = run(points, url)
    for result, name in [(r, "SQLite") for r in results] + [(r, "PostgreSQL") for r in postgres]:
        result.benchmark += f" [{name}]"
    return results + postgres


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 10000,
        sys.argv[2] if len(sys.argv) > 2 else None)
