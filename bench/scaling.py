"""Scaling with the grid: sweeps of 27, 125 and 1,000 points of a 0.05 s script. The API's time
to create the experiment, and the overhead ratio against `xargs`, should grow linearly."""

from __future__ import annotations

import time

from bench.common import Result, running_stack
from bench.sweep_overhead import commands, time_xargs
from tests.e2e_support import Stack

SLEEP = 0.05


def grid_of(points: int) -> dict:
    side = round(points ** (1 / 3))
    return {"i": [round(0.001 * (n + 1), 6) for n in range(side)],
            "j": list(range(1, side + 1)), "k": list(range(1, side + 1))}


def one_size(stack: Stack, points: int) -> tuple[float, float, float]:
    grid = grid_of(points)
    started = time.perf_counter()
    status, created = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                    {"grid": grid, "start": False, "reuse": False})
    create_s = time.perf_counter() - started
    assert status == 201, created
    stack.request("POST", f"/api/v1/experiments/{created['id']}/start")
    while stack.get(f"/api/v1/experiments/{created['id']}")[1]["status"] == "running":
        time.sleep(0.02)
    sweep_s = time.perf_counter() - started
    baseline = time_xargs(commands(grid, stack.data_dir / "snapshots" / str(created["id"])),
                          stack.threads, SLEEP)
    return create_s, sweep_s, baseline


def run(sizes: tuple[int, ...]) -> list[Result]:
    results = []
    with running_stack(threads=8, BENCH_SLEEP=str(SLEEP),
                       SWEEPLAB_MAX_GRID_POINTS=str(max(sizes))) as stack:
        one_size(stack, 8)  # warm-up
        rows = [(size, *one_size(stack, size)) for size in sizes]
    per_point = [create / size * 1000 for size, create, _, _ in rows]
    for size, create, sweep, baseline in rows:
        results.append(Result(
            f"scaling: {size} grid points of {SLEEP:g} s",
            f"create {create * 1000:.0f} ms ({create / size * 1000:.2f} ms/point), "
            f"sweep {sweep:.2f} s vs xargs {baseline:.2f} s, ratio {sweep / baseline:.3f}",
            "linear: ms/point and ratio flat across sizes", None))
        print(results[-1].line(), flush=True)
    # Linear, not worse: the cost per point of the largest grid is no higher than the
    # smallest's (fixed costs make small grids dearer per point), and the ratio stays flat.
    linear = per_point[-1] <= 1.25 * per_point[0]
    ratios = [sweep / baseline for _, _, sweep, baseline in rows]
    results.append(Result("scaling: growth across sizes",
                          f"create ms/point {per_point[0]:.2f} at {rows[0][0]} points, "
                          f"{per_point[-1]:.2f} at {rows[-1][0]}; "
                          f"ratio {min(ratios):.3f}–{max(ratios):.3f}",
                          "ms/point not growing, ratio within 1.25x across sizes",
                          linear and max(ratios) <= 1.25 * min(ratios)))
    print(results[-1].line(), flush=True)
    return results
