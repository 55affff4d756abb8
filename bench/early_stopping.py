"""Early stopping: the wall time it saves on a sweep where half the configurations never learn.

One stack runs the same grid three times (`reuse` off, so each sweep trains every point):
without early stopping (the baseline), with the median rule from step 200, and with successive
halving from step 100. bench/curve_train.py prints ten points, one every `step_s` seconds;
j=1 stays flat, j=2 rises faster with i. Each sweep is timed from the POST to the moment a
client polling the experiment every 20 ms sees it end. A rule passes if it cuts the wall time
by at least 20% and still finds the baseline's best (which must never be pruned).
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import BENCH, Result, running_stack
from tests.e2e_support import Stack

CURVE_SCRIPT = BENCH / "curve_train.py"
RULES = ({"rule": "median", "min_step": 200}, {"rule": "successive_halving", "min_step": 100})
TARGET_RATIO = 0.8
WARM_UP = {"i": [0.1], "j": [2], "k": [10]}
ENDED = ("completed", "failed", "cancelled")


def grid(points: int) -> dict[str, list[float | int]]:
    """`points` configurations (rounded up to even): half with j=1 (hopeless)."""
    return {"i": [round(0.1 * (n + 1), 3) for n in range((points + 1) // 2)],
            "j": [1, 2], "k": [10]}


def timed_sweep(stack: Stack, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Seconds from the POST to the end as a polling client sees it, and the ended experiment."""
    started = time.perf_counter()
    status, created = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                    {**body, "reuse": False})
    assert status == 201, created
    while True:
        _, done = stack.get(f"/api/v1/experiments/{created['id']}")
        if done["status"] in ENDED:
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    assert done["status"] == "completed", done["counts"]
    return elapsed, done


def best_params(done: dict[str, Any]) -> dict[str, Any] | None:
    return done["best"]["params"] if done["best"] else None


def compare(rule: dict[str, Any], baseline: tuple[float, dict[str, Any]],
            ruled: tuple[float, dict[str, Any]], label: str) -> Result:
    (without, plain), (with_rule, done) = baseline, ruled
    ratio = with_rule / without
    best = best_params(plain) or {}
    same_best = bool(best) and best_params(done) == best
    verdict = "unchanged" if same_best else f"CHANGED to {best_params(done)}"
    return Result(
        f"early stopping: {rule['rule'].replace('_', ' ')} rule from step {rule['min_step']}, "
        f"{label}",
        f"without {without:.2f} s, with {with_rule:.2f} s, ratio {ratio:.3f}, "
        f"{done['counts']['pruned']} of {len(done['runs'])} pruned, best "
        f"i={best.get('i')} j={best.get('j')} {verdict}",
        f"ratio <= {TARGET_RATIO}, best unchanged", ratio <= TARGET_RATIO and same_best)


def run(points: int, step_s: float, threads: int) -> list[Result]:
    body = {"grid": grid(points)}
    count = len(body["grid"]["i"]) * 2
    label = f"{count} runs of 10 x {step_s:g} s, N={threads}"
    with running_stack(threads=threads, SWEEPLAB_TRAIN_SCRIPT=str(CURVE_SCRIPT),
                       BENCH_STEP_S=str(step_s)) as stack:
        timed_sweep(stack, {"grid": WARM_UP})  # queues declared, connections open
        baseline = timed_sweep(stack, body)
        results = [compare(rule, baseline, timed_sweep(stack, {**body, "early_stopping": rule}),
                           label) for rule in RULES]
    for result in results:
        print(result.line(), flush=True)
    return results
