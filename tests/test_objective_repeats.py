"""Sweeps that learn, first step: an objective other than the accuracy, and repeated seeds
with each configuration's mean, spread and confidence interval (through the API, with the stub
broker and a real worker thread running the fake script)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.make_sample_data import write_sample
from service.sweeps.statistics import MAXIMIZE, comparison_json, group, ranked
from tests.api_support import (
    SMALL,
    TWO,
    make_model,
    sweep_to_end,
    upload_two_labels,
    wait_for_status,
)
from tests.e2e_support import FAKE_SCRIPTS, ROOT, small_dataset


async def test_repeats_run_each_configuration_once_per_seed_and_pick_the_best_mean(
        client, db, stub_worker, monkeypatch):
    # Given a script whose accuracy the seed decides, j=2 better on every seed
    monkeypatch.setenv("FAKE_TRAIN_MODE", "seeded")
    # When each configuration runs 5 times
    done = await sweep_to_end(client, {"grid": TWO, "repeats": 5})
    # Then every run got its seed, and the seeds reached the script
    assert done["repeats"] == 5 and len(done["runs"]) == 10
    for run in done["runs"]:
        expected = 0.5 + 0.01 * run["seed"] + (0.05 if run["params"]["j"] == 2 else 0)
        assert run["value"] == pytest.approx(expected) == run["accuracy"]
    assert sorted(run["seed"] for run in done["runs"]) == sorted(list(range(5)) * 2)
    # And each configuration reports n, mean, std and a 95% interval, the best by its mean
    best, runner_up = done["configurations"]
    assert best["params"]["j"] == 2 and best["n"] == 5
    assert best["mean"] == pytest.approx(0.57) and best["std"] == pytest.approx(0.0158, abs=1e-3)
    low, high = best["ci95"]
    assert low < best["mean"] < high and high - low == pytest.approx(0.0393, abs=1e-3)
    assert runner_up["mean"] == pytest.approx(0.52)
    assert done["comparison"]["welch_p_value"] < 0.01 and done["comparison"]["distinguishable"]
    assert done["comparison"]["note"] is None
    assert [config["no_variance"] for config in done["configurations"]] == [False, False]
    # And the best run is the best configuration's best-scoring run (seed 4), also for predict
    best_run = next(run for run in done["runs"] if run["id"] == done["best"]["run_id"])
    assert (best_run["params"]["j"], best_run["seed"]) == (2, 4)
    model = await (await client.get(f"/api/v1/models/{done['model_id']}/best")).json()
    assert model["run_id"] == best_run["id"]


async def test_a_random_script_with_repeats_reports_an_undecided_comparison(
        client, db, stub_worker):
    done = await sweep_to_end(client, {"grid": TWO, "repeats": 3})
    assert len(done["runs"]) == 6
    assert all(config["n"] == 3 and config["ci95"] for config in done["configurations"])
    means = [config["mean"] for config in done["configurations"]]
    assert means == sorted(means, reverse=True)
    assert 0 <= done["comparison"]["welch_p_value"] <= 1


async def test_repeats_that_all_gave_the_same_value_make_no_test_and_say_why(
        client, db, stub_worker, monkeypatch):
    # Given a script whose value ignores its seed (a function of i, j and k only)
    monkeypatch.setenv("FAKE_TRAIN_MODE", "smooth")
    # When each configuration runs 3 times
    done = await sweep_to_end(client, {"grid": TWO, "repeats": 3})
    # Then each configuration has its mean and an interval of no width, flagged as such
    best, runner_up = done["configurations"]
    assert (best["params"]["j"], best["n"], best["std"]) == (2, 3, 0.0)
    assert best["ci95"] == [best["mean"], best["mean"]] and best["no_variance"] is True
    assert runner_up["no_variance"] is True and runner_up["mean"] < best["mean"]
    # And no test is made: the comparison says why instead of "distinguishable"
    assert done["comparison"] == {
        "runner_up": runner_up["params"], "welch_p_value": None, "distinguishable": None,
        "note": "no test: every seed gave the same value for the best and the runner-up: "
                "does the script use SWEEPLAB_SEED?"}


def test_welch_s_test_needs_two_runs_and_some_variance_on_each_side():
    def compare(best: list[float], runner_up: list[float]) -> dict:
        runs = [(n, {"i": 0.1, "j": 2, "k": 5}, value) for n, value in enumerate(best)]
        runs += [(10 + n, {"i": 0.1, "j": 1, "k": 5}, value) for n, value in enumerate(runner_up)]
        return comparison_json(ranked(group(runs), MAXIMIZE))

    # Only the runner-up's seeds agree: no test, naming it
    one_side = compare([0.9, 0.95, 0.97], [0.5, 0.5, 0.5])
    assert (one_side["welch_p_value"], one_side["distinguishable"]) == (None, None)
    assert one_side["note"] == ("no test: every seed gave the same value for the runner-up: "
                                "does the script use SWEEPLAB_SEED?")
    # One run of the best: no test either
    assert compare([0.9], [0.5, 0.6])["note"] == (
        "no test: Welch's test needs two runs or more of each, and the best has fewer")
    assert compare([0.9], [0.5])["note"] == ("no test: Welch's test needs two runs or more of "
                                             "each, and the best and the runner-up have fewer")
    # Variance on both sides: the test, and no note
    tested = compare([0.9, 0.91, 0.92], [0.5, 0.52, 0.51])
    assert tested["welch_p_value"] < 0.001 and tested["distinguishable"] is True
    assert tested["note"] is None


async def test_an_objective_to_minimise_picks_the_smallest(client, db, stub_worker,
                                                          monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_MODE", "loss")
    done = await sweep_to_end(client, {"grid": {"i": [0.3, 0.1, 0.2], "j": [1], "k": [5]},
                                       "objective": {"metric": "loss", "direction": "minimize"}})
    assert done["objective"] == {"metric": "loss", "direction": "minimize"}
    best = next(run for run in done["runs"] if run["id"] == done["best"]["run_id"])
    assert best["params"]["i"] == 0.1 and best["value"] == pytest.approx(1.0)
    assert best["accuracy"] is None  # it printed none, and was not asked to
    assert done["comparison"]["welch_p_value"] is None  # one run each: nothing to test


async def test_a_missing_objective_metric_fails_the_run_naming_it(client, db, stub_worker):
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    objective = {"metric": "f1", "direction": "maximize"}
    created = await client.post(f"/api/v1/models/{model_id}/experiments",
                                json={"grid": SMALL, "objective": objective})
    done = await wait_for_status(client, (await created.json())["id"], {"failed"})
    assert done["runs"][0]["error"] == "no f1 found in the output"


@pytest.mark.e2e
def test_the_default_grid_five_times_over_with_an_assignment_style_script(make_stack):
    # Given the assignment-style script (its accuracy is random.random(): pure noise), on the
    # real RabbitMQ with a real worker
    stack = make_stack(threads=4, **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    # When the default grid runs with 5 repeats
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                    {"repeats": 5})
    assert status == 201, created
    done = stack.wait_for_experiment(created["id"])
    # Then 27 x 5 runs, seeds 0-4 for each of the 27 configurations
    assert done["counts"]["succeeded"] == 135 and len(done["configurations"]) == 27
    assert all(config["n"] == 5 for config in done["configurations"])
    # And the best is chosen by mean, with its 95% interval reported
    best = done["configurations"][0]
    assert best["mean"] == max(config["mean"] for config in done["configurations"])
    low, high = best["ci95"]
    assert low < best["mean"] < high
    # (135 runs: the view inlines the best and the most recent 100; all of them are paged)
    assert done["run_count"] == 135 and not done["runs_complete"]
    _, page = stack.get(f"/api/v1/experiments/{created['id']}/runs?limit=1000")
    assert page["next"] is None and len(page["runs"]) == 135
    values = sorted(run["value"] for run in page["runs"] if run["id"] in best["run_ids"])
    assert len(values) == 5
    assert best["mean"] == pytest.approx(sum(values) / 5)
    # And with noise for a signal, the comparison says whether it can tell best from runner-up
    assert 0 <= done["comparison"]["welch_p_value"] <= 1
    best_run = next(run for run in done["runs"] if run["id"] == done["best"]["run_id"])
    assert best_run["id"] in best["run_ids"] and best_run["value"] == values[-1]


def test_our_train_py_scores_each_seed_on_held_out_images_of_its_own(tmp_path: Path):
    # Given the bundled digits, and a configuration whose seeds 0, 1 and 2 all scored 0.974719
    # while the seed drew only the weights and the batches (the same 356 held-out images)
    write_sample(tmp_path / "sample")
    argv = [sys.executable, str(ROOT / "train.py"), "--i", "0.01", "--j", "4", "--k", "2000",
            "--images", str(tmp_path / "sample" / "train")]
    # When our train.py trains it once per seed (each in a folder of its own, all at once)
    children = []
    for seed in range(3):
        (tmp_path / str(seed)).mkdir()
        children.append(subprocess.Popen(
            argv, cwd=tmp_path / str(seed), env={**os.environ, "SWEEPLAB_SEED": str(seed)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    printed = [child.communicate(timeout=300) for child in children]
    # Then each prints the dict it always printed, and the three accuracies differ
    assert [child.returncode for child in children] == [0, 0, 0], printed
    last = [ast.literal_eval(out.splitlines()[-1]) for out, _ in printed]
    assert all(set(line) == {"i", "j", "k", "images", "accuracy"} for line in last)
    assert [(line["i"], line["j"], line["k"]) for line in last] == [("0.01", "4", "2000")] * 3
    accuracies = [line["accuracy"] for line in last]
    assert len(set(accuracies)) == 3, accuracies
