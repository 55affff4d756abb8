"""A remote worker on this host (over loopback, its own data directory, no database): the thin
path through every part. The namespaced hosts and their faults are in test_remote_workers.py."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.e2e_support import (
    Stack,
    best_of,
    multipart,
    small_dataset,
    start_remote_worker,
    terminal_events_per_run,
)
from tests.helpers import png_bytes

pytestmark = pytest.mark.e2e
GRID = {"i": [0.1, 0.2], "j": [1, 2], "k": [1]}


def test_a_remote_worker_trains_a_sweep_through_the_api(remote_stack: Stack, tmp_path: Path):
    # Given a remote worker with a data directory of its own
    remote_dir = tmp_path / "remote-data"
    worker = start_remote_worker(remote_stack, remote_dir, "remote")
    try:
        model_id = small_dataset(remote_stack)
        # When a sweep runs
        _, created = remote_stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                          {"grid": GRID})
        done = remote_stack.wait_for_experiment(created["id"], timeout=120)
        # Then every run succeeded once, with its folder and logs on the API's host
        assert done["counts"]["succeeded"] == 4, (done["counts"], remote_stack.log("remote.log"))
        assert terminal_events_per_run(remote_stack.data_dir) == {
            run["id"]: 1 for run in done["runs"]}
        for run in done["runs"]:
            folder = remote_stack.data_dir / "runs" / str(run["id"])
            assert (folder / "model.txt").is_file() and (folder / "stdout.log").is_file()
        status, logs = remote_stack.get(f"/api/v1/runs/{done['runs'][0]['id']}/logs")
        assert status == 200 and "epoch 1/3" in str(logs)
        assert done["best"]["run_id"] == best_of(done["runs"])["id"]
        body, headers = multipart({"image": ("x.png", png_bytes(3))})
        status, predicted = remote_stack.request("POST", f"/api/v1/models/{model_id}/predict",
                                                 data=body, headers=headers)
        assert status == 200 and predicted["run_id"] == done["best"]["run_id"], predicted
        # And the worker never opened a database; its cache holds each image once
        assert not (remote_dir / "sweeplab.db").exists()
        cached = list((remote_dir / "cache" / "images").rglob("*.png"))
        assert len(cached) == 8
        # When a second experiment on the same images runs, nothing is fetched again
        before = {path: path.stat().st_ino for path in cached}
        _, second = remote_stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                         {"grid": {"i": [0.3], "j": [1], "k": [1]}})
        remote_stack.wait_for_experiment(second["id"], timeout=60)
        after = {p: p.stat().st_ino for p in (remote_dir / "cache" / "images").rglob("*.png")}
        assert after == before
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_logs_and_the_curve_follow_a_remote_run_while_it_runs(remote_stack: Stack,
                                                              tmp_path: Path):
    remote_stack.env.update(FAKE_TRAIN_SLEEP="1.2", FAKE_TRAIN_MODE="curve")
    worker = start_remote_worker(remote_stack, tmp_path / "remote-data", "remote")
    try:
        model_id = small_dataset(remote_stack)
        _, created = remote_stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                          {"grid": {"i": [0.1], "j": [1], "k": [1]}})
        run_id = created["runs"][0]["id"]
        deadline = time.monotonic() + 20
        while True:  # the run is still sleeping when its first lines reach the API
            _, run = remote_stack.get(f"/api/v1/runs/{run_id}")
            _, logs = remote_stack.get(f"/api/v1/runs/{run_id}/logs")
            if run["status"] == "running" and "epoch 1/3" in str(logs):
                break
            assert run["status"] in ("queued", "running") and time.monotonic() < deadline
            time.sleep(0.3)
        done = remote_stack.wait_for_experiment(created["id"], timeout=60)
        assert done["counts"]["succeeded"] == 1
        _, curve = remote_stack.get(f"/api/v1/runs/{run_id}/metrics")
        assert [point["step"] for point in curve["points"]] == [100, 200, 300, 400, 500]
    finally:
        worker.terminate()
        worker.wait(timeout=30)



def test_a_remote_run_is_pruned_and_its_results_are_reused(remote_stack: Stack, tmp_path: Path):
    # Given a remote worker and a script on whose curve the j=1 configurations never learn
    remote_stack.env.update(FAKE_TRAIN_MODE="hopeless")
    worker = start_remote_worker(remote_stack, tmp_path / "remote-data", "remote")
    try:
        model_id = small_dataset(remote_stack)
        body = {"grid": {"i": [0.1, 0.2, 0.3, 0.4], "j": [1, 2], "k": [1]},
                "early_stopping": {"rule": "successive_halving", "min_step": 100}}
        # When the sweep runs with early stopping, the API judging the curves it is sent
        _, created = remote_stack.request("POST", f"/api/v1/models/{model_id}/experiments", body)
        first = remote_stack.wait_for_experiment(created["id"], timeout=120)
        # Then hopeless runs were stopped and ended pruned, and the best was not
        pruned = [run for run in first["runs"] if run["status"] == "pruned"]
        assert len(pruned) >= 3 and all(run["pruned_at"]["step"] < 1000 for run in pruned)
        assert first["best"]["params"] == {"i": 0.4, "j": 2, "k": 1}
        # When the same experiment runs again, what succeeded is reused (by the hash of the
        # script the remote host ran) and only what was pruned trains again
        _, created = remote_stack.request("POST", f"/api/v1/models/{model_id}/experiments", body)
        second = remote_stack.wait_for_experiment(created["id"], timeout=120)
        succeeded = {(r["params"]["i"], r["params"]["j"]) for r in first["runs"]
                     if r["status"] == "succeeded"}
        for run in second["runs"]:
            reused = (run["params"]["i"], run["params"]["j"]) in succeeded
            assert (run["reused_from"] is not None) == reused, run
            assert run["attempts"] == (0 if reused else 1)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_workers_stopped_with_sigterm_are_listed_stopped(remote_stack: Stack, tmp_path: Path):
    # Given a remote worker and the API host's own (aggregate) worker processes, all reporting
    worker = start_remote_worker(remote_stack, tmp_path / "remote-data", "remote")
    try:
        deadline = time.monotonic() + 60
        while {(w["remote"], w["status"]) for w in remote_stack.get(
                "/api/v1/workers")[1]["workers"]} != {(False, "alive"), (True, "alive")}:
            assert time.monotonic() < deadline, remote_stack.get("/api/v1/workers")
            time.sleep(0.3)
        # When each is stopped as systemd stops it (SIGTERM to Dramatiq's main process)
        for process in (worker, remote_stack.worker):
            assert process is not None
            process.terminate()
            assert process.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:  # the whole group: a worker process must not outlive it
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    # Then every one is listed stopped, not alive (nor lost once the lease has passed)
    _, listed = remote_stack.get("/api/v1/workers")
    assert {(w["remote"], w["status"]) for w in listed["workers"]} == {
        (False, "stopped"), (True, "stopped")}, listed
