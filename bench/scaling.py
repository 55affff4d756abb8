"""Scaling with the sweep (issue 24): sweeps of 100, 1,000 and 10,000 runs of a 0.05 s script on
2 worker threads, each against `xargs -P 2` over the same commands, run in the same process.
The ratio must stay at most 1.25 at every size and, at 10,000 runs, within 10% of the ratio at
100 runs: sweeplab's cost a run must not grow with the sweep. Sizes up to 1,000 are the median
of three sweeps and three `xargs` runs (a 100-run sweep lasts 5 s, and one run of it varied from
1.19 to 1.33); the 10,000-run sweep is one of each. Also the API's time to create each
experiment, per point. On SQLite and on a scratch PostgreSQL database (`run_both`);
`python -m bench.scaling [SIZE ...] [sqlite | postgres | both]` for one of them."""

from __future__ import annotations

import statistics
import sys
import time

from bench.big import scratch_postgres
from bench.common import Result, running_stack
from bench.sweep_overhead import commands, time_xargs, timed_sweep
from tests.e2e_support import Stack

SLEEP = 0.05
THREADS = 2
MAX_RATIO = 1.25
MAX_GROWTH = 1.10  # the largest sweep's ratio against the smallest's
REPEATS_UP_TO = 1000  # sizes up to this are measured three times


def grid_of(points: int) -> dict:
    """i × j × k with `points` points, j and k of up to 10 values each."""
    sides, rest = [], points
    for _ in range(2):
        side = max(d for d in range(1, 11) if rest % d == 0)
        sides.append(side)
        rest //= side
    return {"i": [round(0.001 * (n + 1), 6) for n in range(rest)],
            "j": list(range(1, sides[1] + 1)), "k": list(range(1, sides[0] + 1))}


def one_size(stack: Stack, points: int) -> tuple[float, float, float]:
    """Seconds to create the experiment (not started), from the POST that creates and starts
    another of the same grid to its last result, and for `xargs` over the same commands."""
    grid = grid_of(points)
    started = time.perf_counter()
    status, created = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                    {"grid": grid, "start": False, "reuse": False})
    create_s = time.perf_counter() - started
    assert status == 201, created
    stack.request("DELETE", f"/api/v1/experiments/{created['id']}")
    sweeps, baselines = [], []
    for _ in range(3 if points <= REPEATS_UP_TO else 1):
        _, sweep_s, experiment_id = timed_sweep(stack, grid)
        sweeps.append(sweep_s)
        baselines.append(time_xargs(commands(grid, stack.data_dir / "snapshots" /
                                             str(experiment_id)), stack.threads, SLEEP))
    return create_s, statistics.median(sweeps), statistics.median(baselines)


def run(sizes: tuple[int, ...], database_url: str | None = None) -> list[Result]:
    """On SQLite, or on the PostgreSQL database at `database_url`."""
    env = {"SWEEPLAB_DATABASE_URL": database_url} if database_url else {}
    where = "PostgreSQL" if database_url else "SQLite"
    with running_stack(threads=THREADS, BENCH_SLEEP=str(SLEEP),
                       SWEEPLAB_MAX_GRID_POINTS=str(max(20000, *sizes)), **env) as stack:
        timed_sweep(stack, grid_of(10))  # warm-up: queues declared, connections open
        rows = [(size, *one_size(stack, size)) for size in sizes]
    results = []
    for size, create, sweep, baseline in rows:
        results.append(Result(
            f"scaling: {size} runs of {SLEEP:g} s, N={THREADS} [{where}]",
            f"{'medians of 3: ' if size <= REPEATS_UP_TO else ''}sweep {sweep:.2f} s to the "
            f"last result vs xargs {baseline:.2f} s, ratio "
            f"{sweep / baseline:.3f}; create {create * 1000:.0f} ms "
            f"({create / size * 1000:.3f} ms/point)",
            f"ratio <= {MAX_RATIO}", sweep / baseline <= MAX_RATIO))
        print(results[-1].line(), flush=True)
    ratios = [sweep / baseline for _, _, sweep, baseline in rows]
    results.append(Result(f"scaling: growth across sizes [{where}]",
                          f"ratio {ratios[0]:.3f} at {rows[0][0]} runs, {ratios[-1]:.3f} at "
                          f"{rows[-1][0]} ({ratios[-1] / ratios[0]:.3f}x)",
                          f"largest within {MAX_GROWTH}x of the smallest",
                          ratios[-1] <= MAX_GROWTH * ratios[0]))
    print(results[-1].line(), flush=True)
    return results


def run_both(sizes: tuple[int, ...]) -> list[Result]:
    """Every size on SQLite, then on a scratch PostgreSQL database."""
    results = run(sizes)
    with scratch_postgres() as url:
        return results + run(sizes, url)


if __name__ == "__main__":
    # python -m bench.scaling [SIZE ...] [sqlite | postgres | both]
    where = sys.argv[-1] if sys.argv[-1] in ("sqlite", "postgres", "both") else "both"
    chosen = tuple(int(arg) for arg in sys.argv[1:] if arg.isdigit()) or (100, 1000, 10000)
    if where == "both":
        run_both(chosen)
    elif where == "sqlite":
        run(chosen)
    else:
        with scratch_postgres() as scratch:
            run(chosen, scratch)
