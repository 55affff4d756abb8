"""Fault injection with real processes and a real RabbitMQ: pull the plug, find every result."""

from __future__ import annotations

import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.e2e_support import (
    FAKE_SCRIPTS,
    Stack,
    best_of,
    script_processes,
    small_dataset,
    start_sweep,
    terminal_events_per_run,
    wait_until_running,
)
from tests.helpers import TESTS, wait_for
from tests.private_rabbit import PrivateRabbit

pytestmark = pytest.mark.e2e
FAKE = {**FAKE_SCRIPTS, "SWEEPLAB_LEASE_S": "3"}


def sql(stack: Stack, statement: str, *args: object) -> list[tuple]:
    with sqlite3.connect(stack.data_dir / "sweeplab.db", timeout=30) as connection:
        return connection.execute(statement, args).fetchall()


def half_sent_upload(stack: Stack, model_id: int) -> socket.socket:
    """Open an upload, send its headers and 3 MiB of a 10 MiB file part, then stall."""
    boundary = "sweeplabboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; "
            f"filename=\"big.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
    connection = socket.create_connection(("127.0.0.1", stack.port))
    connection.sendall(
        f"POST /api/v1/models/{model_id}/images HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + (10 << 20) + 50}\r\n\r\n".encode() + head
        + b"\x89PNG" + b"\0" * (3 << 20))
    return connection


def test_api_killed_mid_sweep_and_mid_upload(make_stack):
    # Given a sweep in progress and an upload half-sent
    stack = make_stack(threads=4, FAKE_TRAIN_SLEEP="1", **FAKE)
    model_id = small_dataset(stack)
    images_before = sorted(p.name for p in (stack.data_dir / "images").rglob("*.png"))
    experiment_id = start_sweep(stack, model_id)
    upload = half_sent_upload(stack, model_id)
    partial = stack.data_dir / "tmp"
    wait_for(lambda: any(p.is_file() and p.stat().st_size > 0 for p in partial.rglob("*")),
             10, "the upload to reach the disk")
    # When the API is killed with SIGKILL, then started again
    stack.kill_api()
    upload.close()
    stack.start_api()
    # Then the half-sent upload left nothing, nothing uploaded before is lost...
    assert list(partial.iterdir()) == []
    assert sorted(p.name for p in (stack.data_dir / "images").rglob("*.png")) == images_before
    _, model = stack.get(f"/api/v1/models/{model_id}")
    assert model["image_count"] == 8
    assert sql(stack, "SELECT COUNT(*) FROM image") == [(8,)]
    # ...and the sweep completes, each grid point once
    done = stack.wait_for_experiment(experiment_id)
    assert done["counts"]["succeeded"] == 27
    assert terminal_events_per_run(stack.data_dir) == {run["id"]: 1 for run in done["runs"]}


def test_rabbitmq_stopped_and_started_mid_sweep(make_stack, tmp_path, cleanup):
    # Given a sweep running on a private RabbitMQ node
    rabbit = PrivateRabbit(tmp_path / "rabbit")
    rabbit.start()
    cleanup.callback(rabbit.stop)
    stack = make_stack(rabbit.url, threads=4, FAKE_TRAIN_SLEEP="1", **FAKE)
    model_id = small_dataset(stack)
    first = start_sweep(stack, model_id)
    wait_until_running(stack, first, succeeded_at_least=4)
    # When RabbitMQ stops
    rabbit.stop()
    # Then requests that need it get 503 with a clear message, and what they created waits
    status, body = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                 {"grid": {"i": [0.5], "j": [1], "k": [1, 2]}})
    assert status == 503 and "RabbitMQ is unreachable" in body["error"]["message"]
    second = body["experiment_id"]
    status, health = stack.get("/healthz")
    assert (status, health["broker"]) == (503, "down")
    # And the runs under way go on and end while it is away
    wait_for(lambda: stack.get(f"/api/v1/experiments/{first}")[1]["counts"]["running"] == 0,
             30, "the runs under way to end")
    # When it starts again, the workers reconnect by themselves and everything completes
    rabbit.start()
    done = stack.wait_for_experiment(first, timeout=180)
    later = stack.wait_for_experiment(second, timeout=60)
    assert done["counts"]["succeeded"] == 27, done["counts"]
    assert later["counts"]["succeeded"] == 2 and later["waiting_for_broker"] is False
    events = terminal_events_per_run(stack.data_dir)
    assert all(events[run["id"]] == 1 for run in done["runs"] + later["runs"])
    assert done["best"]["run_id"] == best_of(done["runs"])["id"]


def test_runs_of_a_worker_gone_for_good_are_taken_over_or_failed(make_stack):
    # Given two runs left `running` by a worker on a host that is gone, their messages lost
    stack = make_stack(threads=2, FAKE_TRAIN_SLEEP="0.1", **FAKE)
    model_id = small_dataset(stack)
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                    {"grid": {"i": [0.1], "j": [1, 2], "k": [1]},
                                     "start": False})
    first, second = (run["id"] for run in created["runs"])
    sql(stack, "UPDATE experiment SET status = 'running' WHERE id = ?", created["id"])
    for run_id, attempts in ((first, 1), (second, 3)):
        sql(stack, "UPDATE run SET status = 'running', attempts = ?, worker = 'gone-host:42', "
                   "heartbeat_at = '2026-01-01 00:00:00' WHERE id = ?", attempts, run_id)
    # When their lease has expired (3 s here), the reconciler notices
    done = stack.wait_for_experiment(created["id"], timeout=60)
    runs = {run["id"]: run for run in done["runs"]}
    # Then one is run again by a live worker, the other has used up its attempts
    assert (runs[first]["status"], runs[first]["attempts"]) == ("succeeded", 2)
    assert runs[second]["status"] == "failed"
    assert runs[second]["error"].startswith("worker lost")


def test_a_run_longer_than_consumer_timeout_is_not_run_twice(make_stack, tmp_path, cleanup):
    # Given a broker that takes a message back after 2 s unacknowledged
    rabbit = PrivateRabbit(tmp_path / "rabbit", consumer_timeout_ms=2000)
    rabbit.start()
    cleanup.callback(rabbit.stop)
    stack = make_stack(rabbit.url, threads=2, FAKE_TRAIN_SLEEP="8",
                       **{**FAKE, "SWEEPLAB_LEASE_S": "30"})
    model_id = small_dataset(stack)
    # When a run takes 8 s
    experiment_id = start_sweep(stack, model_id, {"i": [0.1], "j": [1], "k": [1]})
    done = stack.wait_for_experiment(experiment_id, timeout=90)
    # Then it was redelivered, but the run was claimed once, ran once and has one result
    run = done["runs"][0]
    assert (run["status"], run["attempts"]) == ("succeeded", 1)
    claims = sql(stack, "SELECT COUNT(*) FROM run_event WHERE run_id = ? AND "
                        "to_status = 'running'", run["id"])
    assert claims == [(1,)]
    _, log = stack.get(f"/api/v1/runs/{run['id']}/logs")
    assert log.count("loading images from") == 1
    assert "timed out waiting for delivery acknowledgement" in (
        Path(tmp_path / "rabbit" / "log") / f"{rabbit.name}.log").read_text()


def test_many_writers_lose_no_update(make_stack):
    # Given 4 worker processes of 8 threads and 500 very short runs
    stack = make_stack(threads=8, processes=4, SWEEPLAB_PYTHON="/bin/bash",
                       SWEEPLAB_TRAIN_SCRIPT=str(TESTS / "scripts" / "fast_train.sh"))
    model_id = small_dataset(stack)
    grid = {"i": [0.1, 0.2, 0.3, 0.4, 0.5], "j": list(range(1, 11)), "k": list(range(1, 11))}
    # When they all finish at once, with readers polling meanwhile
    experiment_id = start_sweep(stack, model_id, grid)
    readers_ok = []
    reader = threading.Thread(target=lambda: readers_ok.append(
        all(stack.get(f"/api/v1/experiments/{experiment_id}")[0] == 200 for _ in range(50))))
    reader.start()
    done = stack.wait_for_experiment(experiment_id, timeout=300)
    reader.join()
    # Then every run is stored, the best is the true best, and SQLite never said "locked"
    assert done["counts"]["succeeded"] == 500, done["counts"]
    assert done["best"]["run_id"] == best_of(done["runs"])["id"]
    _, model = stack.get(f"/api/v1/models/{model_id}")
    assert model["best"] == done["best"]
    assert readers_ok == [True]
    logs = stack.log("worker-1.log", tail=10**8) + stack.log("api.log", tail=10**8)
    assert "database is locked" not in logs
    assert script_processes(stack.data_dir) == []


def test_time_limit_and_cancel_kill_whole_process_groups(make_stack):
    # Given a script that starts a child of its own and never ends
    stack = make_stack(threads=2, FAKE_TRAIN_MODE="hang", **FAKE)
    model_id = small_dataset(stack)
    # When its run outlives a 2 s limit, then the whole group is killed and the run fails
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                    {"grid": {"i": [0.1], "j": [1], "k": [1]}, "timeout_s": 2})
    done = stack.wait_for_experiment(created["id"], timeout=60)
    assert done["runs"][0]["error"] == "timed out after 2 s"
    assert script_processes(stack.data_dir) == []
    # When a running experiment of 6 runs on 2 threads is cancelled
    experiment_id = start_sweep(stack, model_id, {"i": [0.1, 0.2, 0.3], "j": [1, 2], "k": [1]})
    wait_until_running(stack, experiment_id, succeeded_at_least=0)
    _, before = stack.get(f"/api/v1/experiments/{experiment_id}")
    running = [run["id"] for run in before["runs"] if run["status"] == "running"]
    status, cancelled = stack.request("POST", f"/api/v1/experiments/{experiment_id}/cancel")
    # Then every run is cancelled at once, the running scripts die within seconds...
    assert status == 202 and cancelled["counts"]["cancelled"] == 6
    wait_for(lambda: script_processes(stack.data_dir) == [], 10, "the scripts to be killed")
    # ...and once the attempts that ran them have ended, no late result overwrote `cancelled`
    wait_for(lambda: all(f"run {run_id} attempt 1 ended after it was cancelled" in
                         stack.log("worker-1.log", tail=10**6) for run_id in running),
             30, "the cancelled attempts to end")
    _, after = stack.get(f"/api/v1/experiments/{experiment_id}")
    assert after["status"] == "cancelled"
    assert {run["status"] for run in after["runs"]} == {"cancelled"}
