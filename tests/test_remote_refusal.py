"""A remote worker the API does not take (a wrong worker token, a token the API has since
changed, an API it cannot reach) takes no message it could only fail: it refuses to start, or
stops, saying why in one line, and the runs wait in the queue for a worker the API takes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_support import Stack, free_port, small_dataset, start_remote_worker, stop_group
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
ONE_RUN = {"grid": {"i": [0.1], "j": [1], "k": [1]}}
NEW_TOKEN = "worker-secret-after-the-change"
Start = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_worker(remote_stack: Stack, tmp_path: Path) -> Iterator[Start]:
    """start_remote_worker(name, **env), its data in tmp_path/name; stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, **env: str) -> subprocess.Popen[bytes]:
        started.append(start_remote_worker(remote_stack, tmp_path / name, name, **env))
        return started[-1]

    yield start
    for worker in started:
        stop_group(worker, timeout=30)


def queue_one_run(stack: Stack) -> tuple[int, int]:
    """A sweep of one run, its train message in the queue: (experiment id, run id)."""
    model_id = small_dataset(stack)
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments", ONE_RUN)
    assert status == 201, created
    return created["id"], created["runs"][0]["id"]


def run_of(stack: Stack, run_id: int) -> dict[str, Any]:
    status, run = stack.get(f"/api/v1/runs/{run_id}")
    assert status == 200, run
    return run


def exit_code(worker: subprocess.Popen[bytes], stack: Stack, log: str, timeout: float) -> int:
    try:
        return worker.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker still runs after {timeout} s\n{stack.log(log)}") from None


def assert_a_good_worker_runs_it(stack: Stack, start_worker: Start, experiment_id: int,
                                 **env: str) -> None:
    start_worker("good", **env)
    done = stack.wait_for_experiment(experiment_id, timeout=120)
    assert done["counts"]["succeeded"] == 1, (done["counts"], stack.log("good.log"))
    assert [run["attempts"] for run in done["runs"]] == [1]


@pytest.mark.parametrize(("env", "problem"), [
    ({"SWEEPLAB_WORKER_TOKEN": "wrong-token"},
     "answers 401 to SWEEPLAB_WORKER_TOKEN: the token is wrong, or the API's was changed"),
    ({"SWEEPLAB_API_URL": "http://127.0.0.1:{closed}"},
     "cannot reach the API at http://127.0.0.1:{closed} (SWEEPLAB_API_URL): "
     "[Errno 111] Connection refused"),
], ids=["wrong-token", "unreachable-api"])
def test_a_remote_worker_the_api_does_not_take_refuses_to_start_and_takes_no_message(
        remote_stack: Stack, start_worker: Start, env: dict[str, str],
        problem: str):
    # Given a run waiting in the queue
    experiment_id, run_id = queue_one_run(remote_stack)
    closed = str(free_port())
    env = {name: value.format(closed=closed) for name, value in env.items()}
    # When a remote worker starts with a wrong token, or an API URL nothing answers at
    worker = start_worker("bad", **env)
    # Then it exits non-zero at once, saying why in one line, before it takes any message
    assert exit_code(worker, remote_stack, "bad.log", timeout=60) != 0
    log = remote_stack.log("bad.log")
    api_url = env.get("SWEEPLAB_API_URL", remote_stack.base)
    expected = problem.format(closed=closed)
    if "401" in expected:
        expected = f"the API at {api_url} {expected}"
    assert f"sweeplab worker refuses to start: {expected}\n" in log, log
    assert "ready for action" not in log and "Retrying message" not in log
    # And the run was never touched, and no remote worker is listed
    run = run_of(remote_stack, run_id)
    assert (run["status"], run["attempts"], run["error"]) == ("queued", 0, None)
    _, workers = remote_stack.get("/api/v1/workers")
    assert [w for w in workers["workers"] if w["remote"]] == []
    # When a worker the API takes starts, it runs it once
    assert_a_good_worker_runs_it(remote_stack, start_worker, experiment_id)


@pytest.mark.parametrize("worker_lease_s", ["60", "4"], ids=["claim-refused", "report-refused"])
def test_a_remote_worker_whose_token_the_api_no_longer_takes_stops_and_leaves_the_run(
        remote_stack: Stack, start_worker: Start, worker_lease_s: str):
    # Given a remote worker the API takes, registered. Its lease sets how often it reports:
    # every 20 s, a train message reaches it before its next report does; every 1.3 s, its
    # report is refused first.
    old = start_worker("old", SWEEPLAB_LEASE_S=worker_lease_s)
    wait_for(lambda: any(w["remote"] and w["status"] == "alive"
                         for w in remote_stack.get("/api/v1/workers")[1]["workers"]),
             60, "the remote worker to register")
    # When the API restarts with another worker token, and a run is queued
    remote_stack.kill_api()
    remote_stack.env["SWEEPLAB_WORKER_TOKEN"] = NEW_TOKEN
    remote_stack.start_api()
    experiment_id, run_id = queue_one_run(remote_stack)
    # Then the worker stops, non-zero, saying why, without failing or retrying the run
    assert exit_code(old, remote_stack, "old.log", timeout=60) != 0
    log = remote_stack.log("old.log", tail=20000)
    assert (f"sweeplab worker stopped: the API at {remote_stack.base} answers 401 to "
            f"SWEEPLAB_WORKER_TOKEN") in log, log
    assert "Retrying message" not in log and "unhandled exception" not in log
    if worker_lease_s == "60":
        assert f"train({run_id}) goes back to the queue" in log, log
    run = run_of(remote_stack, run_id)
    assert (run["status"], run["attempts"], run["error"]) == ("queued", 0, None)
    # When a worker with the new token starts, it runs it once
    assert_a_good_worker_runs_it(remote_stack, start_worker, experiment_id,
                                 SWEEPLAB_WORKER_TOKEN=NEW_TOKEN)
