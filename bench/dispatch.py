"""Dispatch latency: from the POST to the script starting, and from the script's end to its
result, and the best, being visible in `GET /api/v1/experiments/{id}` (polled every 2 ms)."""

from __future__ import annotations

import time

from bench.common import BENCH, Result, percentile, running_stack
from tests.e2e_support import Stack

TARGET_P50_MS, TARGET_P95_MS = 100, 250


def one_sample(stack: Stack) -> tuple[float, float, float]:
    posted = time.time()
    status, created = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                    {"grid": {"i": [0.1], "j": [1], "k": [1]},
                                     "reuse": False})
    assert status == 201, created
    run_id = created["runs"][0]["id"]
    seen = best = None
    while best is None:
        _, body = stack.get(f"/api/v1/experiments/{created['id']}")
        now = time.time()
        if seen is None and body["runs"][0]["status"] == "succeeded":
            seen = now
        if body["best"] is not None:
            best = now
        time.sleep(0.002)
    folder = stack.data_dir / "runs" / str(run_id)
    started = float((folder / "started.txt").read_text())
    ended = float((folder / "ended.txt").read_text())
    return started - posted, (seen or best) - ended, best - ended


def summary(name: str, seconds: list[float]) -> Result:
    p50, p95 = percentile(seconds, 0.5) * 1000, percentile(seconds, 0.95) * 1000
    return Result(name, f"p50 {p50:.0f} ms, p95 {p95:.0f} ms over {len(seconds)} runs",
                  f"p50 <= {TARGET_P50_MS} ms, p95 <= {TARGET_P95_MS} ms",
                  p50 <= TARGET_P50_MS and p95 <= TARGET_P95_MS)


def run(samples: int) -> list[Result]:
    with running_stack(threads=2, SWEEPLAB_TRAIN_SCRIPT=str(BENCH / "stamp_train.py"),
                       BENCH_SLEEP="0.2") as stack:
        one_sample(stack)  # warm-up
        measured = [one_sample(stack) for _ in range(samples)]
    results = [summary("dispatch: POST to the script starting", [m[0] for m in measured]),
               summary("dispatch: run end to its result visible", [m[1] for m in measured]),
               summary("dispatch: run end to the best updated", [m[2] for m in measured])]
    for result in results:
        print(result.line(), flush=True)
    return results
