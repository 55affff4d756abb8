"""Resident memory of the idle API and an idle worker process (1 process, 8 threads): after a
completed sweep, and again after 1,000 more requests. The difference is a leak's size."""

from __future__ import annotations

import time

from bench.common import Result, children, rss_mb, running_stack

TARGET_MB, LEAK_MB = 80, 5


def _settle() -> None:
    time.sleep(1.0)  # let the last replies and messages finish before reading


def run(requests: int) -> list[Result]:
    with running_stack(threads=8, BENCH_SLEEP="0.05") as stack:
        _, created = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                  {"reuse": False})
        stack.wait_for_experiment(created["id"])
        _settle()
        worker = children(stack.worker.pid)[0]
        before = {"API": rss_mb(stack.api.pid), "worker": rss_mb(worker)}
        paths = [f"/api/v1/experiments/{created['id']}", "/api/v1/models",
                 f"/api/v1/models/{stack.model_id}", f"/experiments/{created['id']}", "/"]
        for turn in range(requests):
            stack.get(paths[turn % len(paths)])
            if turn % 250 == 0:  # the worker takes messages too, not only the API requests
                stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                              {"grid": {"i": [0.1], "j": [1], "k": [turn + 1]},
                               "reuse": False})
        _settle()
        after = {"API": rss_mb(stack.api.pid), "worker": rss_mb(worker)}
        master = rss_mb(stack.worker.pid)
    results = []
    for part in ("API", "worker"):
        growth = after[part] - before[part]
        results.append(Result(
            f"memory: idle {part}" + (" process (8 threads)" if part == "worker" else ""),
            f"{before[part]:.1f} MB after a sweep, {after[part]:.1f} MB after {requests} "
            f"more requests (growth {growth:+.1f} MB)"
            + (f"; its Dramatiq master {master:.1f} MB" if part == "worker" else ""),
            f"<= {TARGET_MB} MB, growth <= {LEAK_MB} MB",
            after[part] <= TARGET_MB and growth <= LEAK_MB))
        print(results[-1].line(), flush=True)
    return results
