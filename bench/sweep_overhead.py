"""Sweep overhead: 27 runs through sweeplab against `xargs -P N` over the same 27 commands.

sweeplab's time runs from the POST that creates the experiment (its snapshot included) to the
last result, as the issue that set the target measures it: the moment the API recorded it (the
experiment's `finished_at`), while a client polls `GET /api/v1/experiments/{id}` 20 times a
second, as the dashboard would. The moment that client saw the end is printed too: it adds up
to a polling interval (50 ms) that `xargs` has no counterpart of. `xargs -P N` runs the same
`python bench/sleep_train.py --i … --images DIR` lines, N at once, N = worker threads. Also the
CPU time the API and the worker processes spent per run (their own, not the scripts'), over the
measured sweeps.
"""

from __future__ import annotations

import datetime
import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import SLEEP_SCRIPT, Result, children, cpu_seconds, running_stack
from service.execution.command import params_argv
from service.sweeps.grid import expand_grid
from tests.e2e_support import Stack

TARGETS = {(1.0, 9): 1.03, 1.0: 1.05, 0.1: 1.25}  # by (sleep, threads), else by sleep
POLL_S = 0.05  # 20 polls a second


def commands(grid: dict, images: Path) -> list[str]:
    return [f"{sys.executable} {SLEEP_SCRIPT} {' '.join(params_argv(p))} --images {images}"
            for p in expand_grid(grid)]


def time_xargs(lines: list[str], threads: int, sleep: float) -> float:
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", str(threads), "-L", "1", "env", f"BENCH_SLEEP={sleep}"],
                   input="\n".join(lines) + "\n", text=True, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_sweep(stack: Stack, grid: dict | None = None) -> tuple[float, int]:
    """Seconds from the POST to completion as a client sees it, and the experiment's id. The
    client polls over one kept-alive connection, as a browser's fetch does."""
    seen, _, experiment_id = timed_sweep(stack, grid)
    return seen, experiment_id


def timed_sweep(stack: Stack, grid: dict | None = None) -> tuple[float, float, int]:
    """Seconds from the POST to completion as the polling client saw it, and to the last
    result (the moment the API recorded it, which ended the experiment); and its id."""
    poller = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
    started_wall, started = time.time(), time.perf_counter()
    status, created = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                    {"grid": grid, "reuse": False} if grid else {"reuse": False})
    assert status == 201, created
    while True:
        poller.request("GET", f"/api/v1/experiments/{created['id']}")
        body = json.loads(poller.getresponse().read())
        if body["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(POLL_S)
    poller.close()
    seen = time.perf_counter() - started
    assert body["counts"]["succeeded"] == body["run_count"], body["counts"]
    finished = datetime.datetime.fromisoformat(body["finished_at"].replace("Z", "+00:00"))
    return seen, finished.timestamp() - started_wall, created["id"]


def service_cpu(stack: Stack) -> tuple[float, float]:
    """CPU seconds so far of the API, and of the worker (its master and worker processes)."""
    assert stack.api is not None and stack.worker is not None
    workers = [stack.worker.pid, *children(stack.worker.pid)]
    return cpu_seconds(stack.api.pid), sum(cpu_seconds(pid) for pid in workers)


def compare(stack: Stack, grid: dict, sleep: float,
            repeat: int) -> tuple[float, float, float, float, float]:
    """Median sweeplab times (to the last result, and as the poller saw the end) and xargs
    time for the same commands; API and worker CPU ms a run."""
    time_sweep(stack, grid)  # warm-up: queues declared, connections open, caches filled
    api_before, worker_before = service_cpu(stack)
    sweeps = [timed_sweep(stack, grid) for _ in range(repeat)]
    api_after, worker_after = service_cpu(stack)
    runs = repeat * len(expand_grid(grid))
    lines = commands(grid, stack.data_dir / "snapshots" / "1")
    baselines = [time_xargs(lines, stack.threads, sleep) for _ in range(repeat)]
    return (statistics.median(sweep[1] for sweep in sweeps),
            statistics.median(sweep[0] for sweep in sweeps), statistics.median(baselines),
            1000 * (api_after - api_before) / runs, 1000 * (worker_after - worker_before) / runs)


def run(sleeps: tuple[float, ...], thread_counts: tuple[int, ...], repeat: int) -> list[Result]:
    grid = {"i": [0.001, 0.01, 0.1], "j": [1, 2, 4], "k": [1000, 2000, 4000]}
    results = []
    for sleep in sleeps:
        for threads in thread_counts:
            with running_stack(threads=threads, BENCH_SLEEP=str(sleep)) as stack:
                sweep, seen, baseline, api_ms, worker_ms = compare(stack, grid, sleep, repeat)
            ratio = sweep / baseline
            target = TARGETS.get((sleep, threads), TARGETS.get(sleep))
            results.append(Result(
                f"sweep overhead, 27 runs of {sleep:g} s, N={threads}",
                f"sweeplab {sweep:.3f} s to the last result, xargs {baseline:.3f} s, ratio "
                f"{ratio:.3f} (the poller saw the end at {seen:.3f} s: {seen / baseline:.3f}); "
                f"CPU a run: API {api_ms:.1f} ms, worker {worker_ms:.1f} ms",
                f"ratio <= {target}" if target else "none", ratio <= target if target else None))
            print(results[-1].line(), flush=True)
    return results
