"""A 10,000-run experiment (issue 24): the time to create it and the API's memory growth, its
view's p50 and size, paging through every run, cancelling it and deleting it. On SQLite (the
default stack); `python -m bench.big POINTS [DATABASE_URL]` for another size or PostgreSQL.
Printed as figures and ratios; nothing here is asserted by the test suite."""

from __future__ import annotations

import sys
import time
import urllib.request

from bench.common import Result, percentile, rss_mb, running_stack
from tests.e2e_support import Stack


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


def run(points: int = 10000, database_url: str | None = None) -> list[Result]:
    env = {"SWEEPLAB_MAX_GRID_POINTS": str(max(points, 20000)), "BENCH_SLEEP": "0.05"}
    if database_url:
        env["SWEEPLAB_DATABASE_URL"] = database_url
    with running_stack(threads=2, **env) as stack:
        results = measure(stack, points)
    for result in results:
        print(result.line(), flush=True)
    return results


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 10000,
        sys.argv[2] if len(sys.argv) > 2 else None)
