"""Sweep overhead: 27 runs through sweeplab against `xargs -P N` over the same 27 commands.

sweeplab's time runs from the POST that creates the experiment to the moment a client polling
`GET /api/v1/experiments/{id}` every 20 ms sees it completed; `xargs -P N` runs the same
`python bench/sleep_train.py --i … --images DIR` lines, N at once, N = worker threads.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import SLEEP_SCRIPT, Result, running_stack
from service.grid import expand_grid
from tests.e2e_support import Stack

TARGETS = {1.0: 1.05, 0.1: 1.25}


def commands(grid: dict, images: Path) -> list[str]:
    return [f"{sys.executable} {SLEEP_SCRIPT} --i {p.i!r} --j {p.j} --k {p.k} --images {images}"
            for p in expand_grid(grid)]


def time_xargs(lines: list[str], threads: int, sleep: float) -> float:
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", str(threads), "-L", "1", "env", f"BENCH_SLEEP={sleep}"],
                   input="\n".join(lines) + "\n", text=True, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def time_sweep(stack: Stack, grid: dict | None = None) -> tuple[float, int]:
    """Seconds from the POST to completion as a client sees it, and the experiment's id."""
    started = time.perf_counter()
    status, created = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                    {"grid": grid, "reuse": False} if grid else {"reuse": False})
    assert status == 201, created
    while True:
        _, body = stack.get(f"/api/v1/experiments/{created['id']}")
        if body["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    assert body["counts"]["succeeded"] == len(body["runs"]), body["counts"]
    return elapsed, created["id"]


def compare(stack: Stack, grid: dict, sleep: float, repeat: int) -> tuple[float, float]:
    """Median sweeplab and xargs times for the same commands."""
    time_sweep(stack, grid)  # warm-up: queues declared, connections open, caches filled
    sweeps = [time_sweep(stack, grid)[0] for _ in range(repeat)]
    lines = commands(grid, stack.data_dir / "snapshots" / "1")
    baselines = [time_xargs(lines, stack.threads, sleep) for _ in range(repeat)]
    return statistics.median(sweeps), statistics.median(baselines)


def run(sleeps: tuple[float, ...], thread_counts: tuple[int, ...], repeat: int) -> list[Result]:
    grid = {"i": [0.001, 0.01, 0.1], "j": [1, 2, 4], "k": [1000, 2000, 4000]}
    results = []
    for sleep in sleeps:
        for threads in thread_counts:
            with running_stack(threads=threads, BENCH_SLEEP=str(sleep)) as stack:
                sweep, baseline = compare(stack, grid, sleep, repeat)
            ratio = sweep / baseline
            target = TARGETS.get(sleep)
            results.append(Result(
                f"sweep overhead, 27 runs of {sleep:g} s, N={threads}",
                f"sweeplab {sweep:.3f} s, xargs {baseline:.3f} s, ratio {ratio:.3f}",
                f"ratio <= {target}" if target else "none", ratio <= target if target else None))
            print(results[-1].line(), flush=True)
    return results
