"""Early stopping (Optuna's median and successive-halving pruners) on the real RabbitMQ with real
workers: a script prints a learning curve on which half the configurations (j=1) never learn.
Those end `pruned` early, with the step and value they stopped at; the best is never pruned."""

from __future__ import annotations

import pytest

from tests.e2e_support import FAKE_SCRIPTS, HOPELESS_GRID, small_dataset

pytestmark = pytest.mark.e2e
LAST_STEP = 1000


def _sweep(make_stack, rule: dict) -> dict:
    # ten points 0.3 s apart: a run lasts 3 s, and a worker looks at its curve every 2 s
    stack = make_stack(threads=2, FAKE_TRAIN_MODE="hopeless", FAKE_TRAIN_SLEEP="0.3",
                       **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                    {"grid": HOPELESS_GRID, "early_stopping": rule, "reuse": False})
    assert status == 201, created
    assert created["early_stopping"] == rule
    done = stack.wait_for_experiment(created["id"])
    assert done["status"] == "completed"
    return done


def _check_pruned_runs(done: dict, min_step: int) -> list[dict]:
    """The pruned runs, each checked; those pruned at the script's last point left out. The
    script sleeps after each point, its last too: a look that falls in that last sleep prunes
    at the last point, rightly (nothing tells a last point from another), but it stopped
    nothing early. It happens when the worker's looks come late, as under a loaded machine."""
    pruned = [run for run in done["runs"] if run["status"] == "pruned"]
    for run in pruned:
        assert min_step <= run["pruned_at"]["step"] <= LAST_STEP
        assert run["value"] is None and run["error"] is None and run["duration_s"] > 0
    best = next(run for run in done["runs"] if run["id"] == done["best"]["run_id"])
    assert best["status"] == "succeeded" and best["params"] == {"i": 0.8, "j": 2, "k": 10}
    assert done["counts"]["pruned"] == len(pruned)
    return [run for run in pruned if run["pruned_at"]["step"] < LAST_STEP]


def test_the_median_rule_prunes_the_hopeless_and_never_the_best(make_stack):
    done = _sweep(make_stack, {"rule": "median", "min_step": 200})
    pruned = _check_pruned_runs(done, 200)
    # The median rule starts once five runs have finished: on two threads, the hopeless runs
    # after the first three pairs are all pruned, each below the median at its step.
    assert sum(run["params"]["j"] == 1 for run in pruned) >= 4
    assert all(run["pruned_at"]["value"] == pytest.approx(0.05)
               for run in pruned if run["params"]["j"] == 1)


def test_successive_halving_prunes_the_hopeless_and_never_the_best(make_stack):
    done = _sweep(make_stack, {"rule": "successive_halving", "min_step": 100})
    pruned = _check_pruned_runs(done, 100)
    # only the first runs to reach a rung can pass it unopposed
    assert sum(run["params"]["j"] == 1 for run in pruned) >= 6
    assert {run["params"]["j"] for run in pruned} <= {1, 2}


def test_runs_shorter_than_a_heartbeat_are_judged_too(make_stack):
    # Given runs of ten points 0.1 s apart: each ends within a heartbeat (2 s)
    stack = make_stack(threads=2, FAKE_TRAIN_MODE="hopeless", FAKE_TRAIN_SLEEP="0.1",
                       **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments", {
        "grid": HOPELESS_GRID, "early_stopping": {"rule": "median", "min_step": 200},
        "reuse": False})
    assert status == 201, created
    done = stack.wait_for_experiment(created["id"])
    # Then the pruner still looked as their curves grew: hopeless runs were stopped early
    pruned = _check_pruned_runs(done, 200)
    assert sum(run["params"]["j"] == 1 for run in pruned) >= 3
