"""A 10,000-run experiment (issue 24): the time to create it and the API's memory growth, its
view's p50 and size, paging through every run, cancelling it and deleting it; then deleting a
model with a 10,000-run experiment whose runs have folders on disk, and the time until its
files are gone. On SQLite and on a scratch PostgreSQL database (`run_both`);
`python -m bench.big [POINTS] [sqlite | DATABASE_URL]` for one of them. Printed as figures and
ratios; nothing here is asserted by the test suite."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

from bench.common import Result, percentile, rss_mb, running_stack
from tests.e2e_support import Stack
from tests.helpers import trash_emptied

POSTGRES_ADMIN_URL = os.environ.get("SWEEPLAB_TEST_POSTGRES_URL",
                                    "postgresql://postgres@127.0.0.1:5432/postgres")


def grid_of(points: int) -> dict:
    side = round(points ** 0.25)  # 10 x 10 x 10 x 10 for 10,000
    return {"i": [round(0.001 * (n + 1), 6) for n in range(side)],
            "j": list(range(1, side + 1)), "k": list(range(1, side + 1)),
            "m": list(range(side))}


def _get_bytes(stack: Stack, path: str) -> tuple[float, int]:
    request = urllib.request.Request(stack.base + path)
    started = time.perf_counter()
    with urllib.request.urlopen(request) as response:
        body = response.read()
    return time.perf_counter() - started, len(body)


def measure(stack: Stack, points: int) -> list[Result]:
    assert stack.api is not None
    rss_before = rss_mb(stack.api.pid)
    started = time.perf_counter()
    status, created = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                    {"grid": grid_of(points), "start": False, "reuse": False})
    create_s = time.perf_counter() - started
    assert status == 201, created
    growth = rss_mb(stack.api.pid) - rss_before
    path = f"/api/v1/experiments/{created['id']}"
    gets = [_get_bytes(stack, path) for _ in range(50)]
    size = gets[-1][1]
    p50 = percentile([seconds for seconds, _ in gets], 0.5) * 1000
    started, pages, after = time.perf_counter(), 0, None
    while True:
        _, page = stack.get(f"{path}/runs?limit=1000" + (f"&after={after}" if after else ""))
        pages += 1
        after = page["next"]
        if after is None:
            break
    paging_s = time.perf_counter() - started
    stack.request("POST", f"{path}/start")
    started = time.perf_counter()
    stack.request("POST", f"{path}/cancel")
    cancel_s = time.perf_counter() - started
    _wait_until_not_running(stack, path)  # a delete while it still runs is a 409
    started = time.perf_counter()
    deleted, _ = stack.request("DELETE", path)
    delete_s = time.perf_counter() - started
    return [
        Result(f"big: create a {points}-point experiment",
               f"{create_s * 1000:.0f} ms, API memory growth {growth:.1f} MB",
               "< 1 s, growth < 50 MB", create_s < 1 and growth < 50),
        Result(f"big: GET the {points}-run experiment (not running)",
               f"p50 {p50:.1f} ms over 50, {size / 1024:.1f} KB", "p50 < 20 ms, < 100 KB",
               p50 < 20 and size < 100 * 1024),
        Result(f"big: page through {points} runs, 1,000 a page",
               f"{pages} pages in {paging_s * 1000:.0f} ms", "—", None),
        Result(f"big: cancel the {points}-run experiment just started",
               f"{cancel_s * 1000:.0f} ms", "< 2 s", cancel_s < 2),
        Result(f"big: delete the cancelled experiment ({deleted})",
               f"{delete_s * 1000:.0f} ms", "< 5 s", delete_s < 5),
    ]


def _wait_until_not_running(stack: Stack, path: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while stack.get(path)[1]["status"] == "running":
        assert time.monotonic() < deadline, f"{path} still running after {timeout} s"
        time.sleep(0.1)


def _run_ids(stack: Stack, experiment_id: int) -> list[int]:
    ids, after = [], None
    while True:
        _, page = stack.get(f"/api/v1/experiments/{experiment_id}/runs?limit=1000"
                            + (f"&after={after}" if after else ""))
        ids += [run["id"] for run in page["runs"]]
        after = page["next"]
        if after is None:
            return ids


def measure_model_delete(stack: Stack, points: int) -> Result:
    """Delete the stack's model once it has an experiment of `points` runs, each with a
    folder holding a log, as finished runs leave them: the answer's time, then the time
    until its folders, snapshots and images are gone from the disk."""
    status, created = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                    {"grid": grid_of(points), "start": False, "reuse": False})
    assert status == 201, created
    runs_dir = stack.data_dir / "runs"
    for run_id in _run_ids(stack, created["id"]):
        (runs_dir / str(run_id)).mkdir()
        (runs_dir / str(run_id) / "log.txt").write_text(f"run {run_id}: accuracy 0.5\n" * 4)
    started = time.perf_counter()
    deleted, _ = stack.request("DELETE", f"/api/v1/models/{stack.model_id}")
    delete_s = time.perf_counter() - started
    deadline = started + 600
    while not trash_emptied(stack.data_dir) and time.perf_counter() < deadline:
        time.sleep(0.05)
    removed_s = time.perf_counter() - started
    left = [path for folder in ("runs", "snapshots", "images")
            for path in (stack.data_dir / folder).rglob("*") if not path.is_dir()]
    return Result(f"big: delete a model with a {points}-run experiment, a folder each "
                  f"({deleted})",
                  f"{delete_s * 1000:.0f} ms; its files gone {removed_s:.1f} s after the "
                  f"request, {len(left)} files left", "< 5 s, nothing left",
                  deleted == 204 and delete_s < 5 and not left)


def run(points: int = 10000, database_url: str | None = None) -> list[Result]:
    env = {"SWEEPLAB_MAX_GRID_POINTS": str(max(points, 20000)), "BENCH_SLEEP": "0.05"}
    if database_url:
        env["SWEEPLAB_DATABASE_URL"] = database_url
    with running_stack(threads=2, **env) as stack:
        results = measure(stack, points)
        results.append(measure_model_delete(stack, points))
    name = "PostgreSQL" if database_url else "SQLite"
    for result in results:
        result.benchmark += f" [{name}]"
        print(result.line(), flush=True)
    return results


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    name = f"sweeplab_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(POSTGRES_ADMIN_URL)
    admin.autocommit = True  # CREATE DATABASE runs outside a transaction
    try:
        admin.cursor().execute(f"CREATE DATABASE {name}")
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def run_both(points: int = 10000) -> list[Result]:
    """Every figure on SQLite, then on a scratch PostgreSQL database."""
    results = run(points)
    with scratch_postgres() as url:
        return results + run(points, url)


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    where = sys.argv[2] if len(sys.argv) > 2 else "both"
    if where == "both":
        run_both(size)
    else:
        run(size, None if where == "sqlite" else where)
