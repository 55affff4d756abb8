"""Polling cost stays flat (issue 24): the API's CPU for a poll of an unchanged experiment of
10,000 runs against one of 27 runs, polled over one kept-alive connection 20 times a second, as
the dashboard or a waiting script would. Rounds of each alternate, in the same process; the API's
CPU is the scheduler's own count of its threads' time."""

from __future__ import annotations

import http.client
import statistics
import time

from bench.common import Result, cpu_seconds, running_stack
from bench.scaling import grid_of
from bench.sweep_overhead import timed_sweep
from tests.e2e_support import Stack

POLL_S = 0.05
MAX_RATIO = 1.20


def poll_cpu_ms(stack: Stack, experiment_id: int, polls: int) -> float:
    """The API's CPU milliseconds a poll, over `polls` polls at 20 a second."""
    assert stack.api is not None
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    path = f"/api/v1/experiments/{experiment_id}"
    connection.request("GET", path)
    connection.getresponse().read()  # the view built and kept before counting
    before = cpu_seconds(stack.api.pid)
    for _ in range(polls):
        connection.request("GET", path)
        connection.getresponse().read()
        time.sleep(POLL_S)
    spent = cpu_seconds(stack.api.pid) - before
    connection.close()
    return spent / polls * 1000


def run(points: int, polls: int, rounds: int) -> list[Result]:
    with running_stack(threads=2, BENCH_SLEEP="0.01",
                       SWEEPLAB_MAX_GRID_POINTS=str(max(points, 20000))) as stack:
        _, _, small = timed_sweep(stack, grid_of(27 if points >= 27 else points))
        status, big = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                    {"grid": grid_of(points), "start": False, "reuse": False})
        assert status == 201, big
        small_ms, big_ms = [], []
        for _ in range(rounds):
            small_ms.append(poll_cpu_ms(stack, small, polls))
            big_ms.append(poll_cpu_ms(stack, big["id"], polls))
    small_median, big_median = statistics.median(small_ms), statistics.median(big_ms)
    ratio = big_median / small_median
    return [Result(f"polling: an unchanged experiment of {points} runs against one of 27",
                   f"API CPU a poll {big_median:.3f} ms against {small_median:.3f} ms, ratio "
                   f"{ratio:.2f} (medians of {rounds} rounds of {polls} polls at 20/s)",
                   f"ratio <= {MAX_RATIO}", ratio <= MAX_RATIO)]
