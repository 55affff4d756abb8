"""End to end: the API and `dramatiq actors` as real processes, on the real RabbitMQ."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from tests.e2e_support import (
    FAKE_SCRIPTS,
    ROOT,
    Stack,
    best_of,
    multipart,
    script_processes,
    small_dataset,
    sweep,
    terminal_events_per_run,
    wait_until_running,
)
from tests.helpers import png_bytes

pytestmark = pytest.mark.e2e


def test_api_test_script_runs_our_train_py_on_the_sample_data(make_stack, tmp_path):
    # Given the service with the default train.py and test.py, and the bundled sample data
    stack = make_stack(threads=2)
    sample = tmp_path / "sample"
    # When the curl script walks the whole API: upload, the 27-run sweep, best, predictions
    done = subprocess.run(["bash", "scripts/api_test.sh", stack.base], cwd=ROOT,
                          env={**os.environ, "SAMPLE_DIR": str(sample)},
                          capture_output=True, text=True, timeout=900)
    # Then it passes, the best run is really good, and predictions are mostly right
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    right, total = map(int, re.search(r"(\d+) of (\d+) predictions right", done.stdout).groups())
    assert total == 20 and right >= 16, done.stdout[-2000:]
    _, models = stack.get("/api/v1/models")
    model = next(m for m in models["models"] if m["name"].startswith("digits-"))
    _, experiments = stack.get(f"/api/v1/models/{model['id']}/experiments")
    _, experiment = stack.get(f"/api/v1/experiments/{experiments['experiments'][0]['id']}")
    assert experiment["counts"]["succeeded"] == 27
    assert experiment["best"]["run_id"] == best_of(experiment["runs"])["id"]
    assert experiment["best"]["accuracy"] >= 0.9
    assert model["best"] == experiment["best"]


def test_a_script_like_the_assignments_runs_unmodified(make_stack):
    # Given a script that parses flags by hand, sleeps, and prints a dict with a random accuracy
    stack = make_stack(threads=4, FAKE_TRAIN_SLEEP="0.3", **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    # When the default sweep runs
    done = sweep(stack, model_id)
    # Then every one of the 27 grid points has its accuracy, and the best is the highest
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 27
    points = {(r["params"]["i"], r["params"]["j"], r["params"]["k"]) for r in done["runs"]}
    assert len(points) == 27
    assert all(0 <= run["accuracy"] <= 1 and run["attempts"] == 1 for run in done["runs"])
    assert done["best"]["run_id"] == best_of(done["runs"])["id"]
    body, headers = multipart({"image": ("x.png", png_bytes(3))})
    status, predicted = stack.request("POST", f"/api/v1/models/{model_id}/predict",
                                      data=body, headers=headers)
    assert status == 200, predicted
    assert predicted["output"]["label"] == "7"
    assert predicted["params"] == done["best"]["params"]


def test_failing_and_missing_scripts_fail_their_runs_clearly(make_stack, tmp_path):
    stack = make_stack(FAKE_TRAIN_MODE="fail_j4", **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    done = sweep(stack, model_id, {"i": [0.1], "j": [1, 2, 4], "k": [1, 2]})
    failed = [run for run in done["runs"] if run["status"] == "failed"]
    assert [run["params"]["j"] for run in failed] == [4, 4]
    assert all(run["exit_code"] == 3 and "layers must be < 4" in run["error"] for run in failed)
    assert done["status"] == "completed"
    assert done["best"]["params"]["j"] in (1, 2)
    stack.stop()
    missing = make_stack(SWEEPLAB_TRAIN_SCRIPT=str(tmp_path / "nowhere.py"))
    status, experiment = missing.request("POST", f"/api/v1/models/{model_id}/experiments",
                                         {"grid": {"i": [0.1], "j": [1], "k": [1]}})
    done = missing.wait_for_experiment(experiment["id"])
    assert done["status"] == "failed"
    assert done["runs"][0]["error"] == f"train script not found: {tmp_path / 'nowhere.py'}"


def kill_worker_mid_run(stack: Stack) -> None:
    children = stack.worker_children()
    assert children, "the worker has no worker process"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    # A Dramatiq master whose worker process died exits: systemd's Restart=always restarts it.
    stack.worker.wait(timeout=30)
    deadline = time.monotonic() + 10
    while script_processes(stack.data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert script_processes(stack.data_dir) == [], "train.py outlived its worker"


def test_worker_killed_twice_mid_sweep_loses_nothing_and_runs_nothing_twice(make_stack):
    # Given a 27-run sweep of 1.5 s runs on 4 worker threads
    stack = make_stack(threads=4, FAKE_TRAIN_SLEEP="1.5", **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments", {})
    assert status == 201
    # When the worker process is killed with SIGKILL mid-run, twice, and restarted each time
    for round_number in (1, 2):
        wait_until_running(stack, created["id"], succeeded_at_least=4 * round_number)
        kill_worker_mid_run(stack)
        stack.start_worker()
    done = stack.wait_for_experiment(created["id"])
    # Then every grid point ended exactly once, with one stored result
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 27, done["counts"]
    assert terminal_events_per_run(stack.data_dir) == {run["id"]: 1 for run in done["runs"]}
    assert any(run["attempts"] == 2 for run in done["runs"])
    assert done["best"]["run_id"] == best_of(done["runs"])["id"]
    assert script_processes(stack.data_dir) == []


def test_stopping_the_worker_kills_its_scripts_and_requeues_their_runs(make_stack):
    # Given long runs in progress
    stack = make_stack(threads=2, FAKE_TRAIN_SLEEP="60", **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                    {"grid": {"i": [0.1], "j": [1, 2], "k": [1]}})
    wait_until_running(stack, created["id"], succeeded_at_least=0)
    # When the worker is stopped the way systemd stops it (SIGTERM)
    started = time.monotonic()
    os.kill(stack.worker.pid, signal.SIGTERM)
    stack.worker.wait(timeout=30)
    # Then it stops promptly, leaves no script behind, and the runs wait for the next worker
    assert time.monotonic() - started < 20
    assert script_processes(stack.data_dir) == []
    _, body = stack.get(f"/api/v1/experiments/{created['id']}")
    assert body["counts"]["queued"] == 2, body["counts"]
    stack.env["FAKE_TRAIN_SLEEP"] = "0.1"
    stack.start_worker()
    done = stack.wait_for_experiment(created["id"])
    assert done["counts"]["succeeded"] == 2
    assert terminal_events_per_run(stack.data_dir) == {run["id"]: 1 for run in done["runs"]}
