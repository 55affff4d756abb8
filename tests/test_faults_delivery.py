"""No run stays queued for nothing, with real processes: a database outage longer than the
worker's retries, and a worker started against the wrong database."""

from __future__ import annotations

from pathlib import Path

import pytest
from playhouse.db_url import parse

from tests.e2e_support import FAKE_SCRIPTS, Stack, small_dataset
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e
GRID = {"i": [0.1], "j": [1, 2], "k": [1]}


def start(stack: Stack) -> Stack:
    stack.start_api()
    stack.start_worker()
    return stack


def test_a_database_outage_longer_than_the_retries_fails_runs_clearly_then_recovers(
        tmp_path: Path, vhost_url: str, postgres_database):
    # Given the API on PostgreSQL and a worker that reaches it through a link we can cut
    url = postgres_database[0]
    proxy = TcpProxy(parse(url).get("port") or 5432)
    proxy.up()
    stack = Stack(tmp_path / "data", vhost_url, threads=2, SWEEPLAB_DATABASE_URL=url,
                  SWEEPLAB_LEASE_S="3", SWEEPLAB_TRAIN_RETRIES="1", FAKE_TRAIN_SLEEP="0.1",
                  **FAKE_SCRIPTS)
    stack.start_api()
    stack.env["SWEEPLAB_DATABASE_URL"] = url.replace(f":{parse(url).get('port') or 5432}/",
                                                     f":{proxy.port}/")
    stack.start_worker()
    try:
        model_id = small_dataset(stack)
        # When the worker's database link goes down for longer than its retries
        proxy.down()
        status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                        {"grid": GRID})
        assert status == 201, created
        # Then the runs do not sit queued: they end failed, saying why
        done = stack.wait_for_experiment(created["id"], timeout=120)
        assert done["status"] == "failed" and done["counts"]["failed"] == 2, done["counts"]
        for run in done["runs"]:
            assert "dead-lettered 3 times" in run["error"], run["error"]
            assert "OperationalError" in run["error"], run["error"]
        # And once the link is back, a retry runs them
        proxy.up()
        status, _ = stack.request("POST", f"/api/v1/experiments/{created['id']}/retry")
        assert status == 202
        again = stack.wait_for_experiment(created["id"], timeout=120)
        assert again["status"] == "completed" and again["counts"]["succeeded"] == 2
    finally:
        stack.stop()
        proxy.down()


def test_a_worker_on_an_empty_database_refuses_to_start_and_eats_nothing(tmp_path: Path,
                                                                        vhost_url: str):
    # Given a good stack, and a second worker pointed at another, empty data directory
    good = start(Stack(tmp_path / "good", vhost_url, threads=2, FAKE_TRAIN_SLEEP="0.2",
                       **FAKE_SCRIPTS))
    stray = Stack(tmp_path / "stray", vhost_url, threads=4, **FAKE_SCRIPTS)
    try:
        stray.start_worker()
        # Then it exits at once with a clear error, and a non-zero code
        code = stray.worker.wait(timeout=60)
        assert code != 0
        assert "refuses to start" in stray.log("worker-1.log")
        assert "has no sweeplab schema" in stray.log("worker-1.log")
        # And the good stack's sweep completes
        model_id = small_dataset(good)
        status, created = good.request("POST", f"/api/v1/models/{model_id}/experiments",
                                       {"grid": {"i": [0.1, 0.2], "j": [1, 2], "k": [1]}})
        assert status == 201
        done = good.wait_for_experiment(created["id"], timeout=120)
        assert done["counts"]["succeeded"] == 4
    finally:
        for stack in (good, stray):
            stack.stop()
    assert stray.worker.returncode is not None
