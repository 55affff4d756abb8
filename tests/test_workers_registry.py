"""The worker registry: workers report themselves, the API lists them (alive or lost, with the
runs they run), the dashboard shows them, and the worker middleware keeps reporting."""

from __future__ import annotations

import os
import re
import threading
from datetime import datetime, timedelta

import pytest
from dramatiq import Worker

from actors.registry import WorkerRegistry
from service.core.errors import Invalid
from service.core.tables import Experiment, MLModel, Run, WorkerProcess
from service.core.timeutil import utcnow
from service.dispatch.broker import AGGREGATE_QUEUE, TRAIN_QUEUE
from service.execution.supervise import this_worker
from service.settings import SettingsError
from service.workers.registry import host_of, list_workers, report_worker
from tests.conftest import make_settings
from tests.helpers import run_params, wait_for

LEASE_S = 30.0
RETENTION_S = 86400.0
T0 = datetime(2026, 1, 1, 12, 0, 0)
WORKER_TOKEN = "w0rker-t0ken"


def info(host: str = "gpu-box", pid: int = 101, **changes) -> dict:
    return {"name": f"{host}:{pid}", "host": host, "pid": pid, "threads": 2, "gpus": ["0", "1"],
            "version": "abc1234", "queues": [TRAIN_QUEUE], "remote": True, **changes}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch):
    """The registry's idea of now, moved by hand."""
    now = [T0]
    monkeypatch.setattr("service.workers.registry.utcnow", lambda: now[0])
    return now


def make_runs(*specs: tuple[str, str | None]) -> list[int]:
    """Runs of one experiment, each (status, worker); their ids."""
    model = MLModel.create(name=f"m{MLModel.select().count()}")
    experiment = Experiment.create(model=model, grid={}, timeout_s=60)
    return [Run.create(experiment=experiment, **run_params(0.1, 1, number + 1),
                       status=status, worker=worker, attempts=1).id
            for number, (status, worker) in enumerate(specs)]


# --- the domain functions --------------------------------------------------------------------

def test_a_report_registers_the_worker_and_the_next_one_updates_it(db, clock):
    # Given a worker's first report
    report_worker(info(), RETENTION_S)
    # When it reports again later, with other details
    clock[0] = T0 + timedelta(seconds=10)
    report_worker(info(threads=4, version="def5678"), RETENTION_S)
    # Then there is one worker, started at its first report, seen at its last
    [worker] = list_workers(LEASE_S, RETENTION_S)
    assert worker == {"name": "gpu-box:101", "host": "gpu-box", "pid": 101, "threads": 4,
                      "gpus": ["0", "1"], "version": "def5678", "queues": [TRAIN_QUEUE],
                      "remote": True, "started_at": "2026-01-01T12:00:00.000Z",
                      "last_seen_at": "2026-01-01T12:00:10.000Z", "status": "alive",
                      "runs": []}
    assert WorkerProcess.select().count() == 1


def test_a_worker_silent_past_the_lease_is_lost_and_the_newest_comes_first(db, clock):
    # Given two workers, the second started later
    report_worker(info("old-box", 7), RETENTION_S)
    clock[0] = T0 + timedelta(seconds=20)
    report_worker(info("new-box", 8), RETENTION_S)
    # When the lease has passed since the first last reported
    clock[0] = T0 + timedelta(seconds=LEASE_S + 1)
    listed = list_workers(LEASE_S, RETENTION_S)
    # Then it is lost, the other is alive, and the newest is listed first
    assert [(w["name"], w["status"]) for w in listed] == [("new-box:8", "alive"),
                                                          ("old-box:7", "lost")]
    # And at exactly the lease it was still alive
    clock[0] = T0 + timedelta(seconds=LEASE_S)
    assert [w["status"] for w in list_workers(LEASE_S, RETENTION_S)] == ["alive", "alive"]
    # And a lost worker that reports again is alive again
    clock[0] = T0 + timedelta(seconds=100)
    report_worker(info("old-box", 7), RETENTION_S)
    assert {w["name"]: w["status"] for w in list_workers(LEASE_S, RETENTION_S)} == {
        "old-box:7": "alive", "new-box:8": "lost"}


def test_each_worker_lists_the_runs_it_is_running_now(db):
    # Given two workers, runs running on each, and runs they ran before or no one runs
    report_worker(info("a", 1), RETENTION_S)
    report_worker(info("b", 2), RETENTION_S)
    ids = make_runs(("running", "a:1"), ("running", "b:2"), ("succeeded", "a:1"),
                    ("running", "a:1"), ("queued", None), ("failed", "b:2"),
                    ("running", "a:11"))
    # When the workers are listed
    runs = {w["name"]: w["runs"] for w in list_workers(LEASE_S, RETENTION_S)}
    # Then each shows exactly the running runs that name it (a:11 is not a:1)
    assert runs == {"a:1": [ids[0], ids[3]], "b:2": [ids[1]]}


def test_a_worker_that_stopped_cleanly_is_listed_stopped_not_lost(db, clock):
    # Given a worker that reported, then said it stopped
    report_worker(info("gpu-box", 7), RETENTION_S)
    clock[0] = T0 + timedelta(seconds=5)
    report_worker(info("gpu-box", 7, stopped=True), RETENTION_S)
    # Then it is stopped, last seen when it stopped, and still stopped after the lease
    [worker] = list_workers(LEASE_S, RETENTION_S)
    assert (worker["status"], worker["last_seen_at"]) == ("stopped", "2026-01-01T12:00:05.000Z")
    clock[0] = T0 + timedelta(seconds=LEASE_S * 10)
    assert [w["status"] for w in list_workers(LEASE_S, RETENTION_S)] == ["stopped"]
    # When a new process with the same host and pid reports (pids are reused)
    report_worker(info("gpu-box", 7), RETENTION_S)
    # Then it is alive, started now
    [worker] = list_workers(LEASE_S, RETENTION_S)
    assert (worker["status"], worker["started_at"]) == ("alive", "2026-01-01T12:05:00.000Z")


def test_workers_stopped_or_lost_past_the_retention_are_no_longer_listed_nor_kept(db, clock):
    # Given a worker restarted 8 times, a minute apart: each stopped cleanly but the fourth,
    # which was killed (it never said so)
    for restart in range(8):
        clock[0] = T0 + timedelta(minutes=restart)
        report_worker(info("box", 100 + restart), RETENTION_S)
        if restart != 3:
            report_worker(info("box", 100 + restart, stopped=True), RETENTION_S)
    clock[0] = T0 + timedelta(minutes=8)
    report_worker(info("box", 200), RETENTION_S)
    # Then all nine are listed, within the retention
    statuses = [w["status"] for w in list_workers(LEASE_S, RETENTION_S)]
    assert statuses == ["alive"] + ["stopped"] * 4 + ["lost"] + ["stopped"] * 3
    # When the retention has passed since the first five were last seen, the live one reporting
    clock[0] = T0 + timedelta(seconds=RETENTION_S, minutes=4, milliseconds=1)
    report_worker(info("box", 200), RETENTION_S)
    # Then they are no longer listed
    assert [(w["pid"], w["status"]) for w in list_workers(LEASE_S, RETENTION_S)] == [
        (200, "alive"), (107, "stopped"), (106, "stopped"), (105, "stopped")]
    # And the next worker to register clears them out
    report_worker(info("box", 300), RETENTION_S)
    kept = sorted(worker.pid for worker in WorkerProcess.select())
    assert kept == [105, 106, 107, 200, 300]


def test_the_retention_may_not_be_shorter_than_the_lease(settings):
    with pytest.raises(SettingsError, match="SWEEPLAB_WORKER_RETENTION_S must be at least "
                                            "SWEEPLAB_LEASE_S"):
        make_settings(settings.data_dir, SWEEPLAB_LEASE_S="60", SWEEPLAB_WORKER_RETENTION_S="59")
    assert make_settings(settings.data_dir).worker_retention_s == 86400.0


@pytest.mark.parametrize(("changes", "field"), [
    ({"pid": "101"}, "pid"),
    ({"pid": True}, "pid"),
    ({"pid": 0}, "pid"),
    ({"threads": 0}, "threads"),
    ({"threads": 2.0}, "threads"),
    ({"gpus": "0,1"}, "gpus"),
    ({"gpus": [0, 1]}, "gpus"),
    ({"queues": [""]}, "queues"),
    ({"queues": ["q"] * 65}, "queues"),
    ({"remote": "yes"}, "remote"),
    ({"version": "v" * 101}, "version"),
    ({"host": "bad\nhost", "name": "bad\nhost:101"}, "name"),
    ({"host": ""}, "host"),
    ({"name": "other-box:101"}, "name"),
    ({"colour": "red"}, "colour"),
    ({"stopped": "yes"}, "stopped"),
])
def test_an_invalid_report_is_refused_naming_the_field(db, changes, field):
    with pytest.raises(Invalid) as refused:
        report_worker(info(**changes), RETENTION_S)
    assert refused.value.field == field
    assert WorkerProcess.select().count() == 0


def test_a_report_missing_a_field_is_refused_naming_it(db):
    body = info()
    del body["threads"]
    with pytest.raises(Invalid) as refused:
        report_worker(body, RETENTION_S)
    assert refused.value.field == "threads"


def test_the_host_of_a_run_is_its_worker_before_the_last_colon():
    assert host_of("gpu-box.lan:4242") == "gpu-box.lan"
    assert host_of("fe80::1:99") == "fe80::1"
    assert host_of("no-pid") == "no-pid"
    assert host_of(None) is None


# --- over HTTP and on the dashboard ----------------------------------------------------------

def _with_registry_routes(app) -> None:
    """The registry's routes, for as long as service/web/routes.py does not carry them yet."""
    from service.web.api import workers
    from service.web.dashboard import pages

    wanted = [("GET", "/api/v1/workers", workers.list_all),
              ("POST", "/api/v1/worker/processes", workers.report),
              ("GET", "/workers", pages.workers)]
    registered = {(route.method, route.resource.canonical) for route in app.router.routes()}
    for method, path, handler in wanted:
        if (method, path) not in registered:
            app.router.add_route(method, path, handler)


@pytest.fixture
async def api(aiohttp_client, settings, stub_broker):
    """The app with the worker routes open (a worker token is set)."""
    from service.app import create_app

    app = create_app(make_settings(settings.data_dir, SWEEPLAB_WORKER_TOKEN=WORKER_TOKEN),
                     broker=stub_broker)
    _with_registry_routes(app)
    return await aiohttp_client(app)


def as_worker(token: str = WORKER_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_worker_reports_over_http_and_the_api_lists_it(api, db):
    # Given no worker yet
    empty = await api.get("/api/v1/workers")
    assert empty.status == 200 and await empty.json() == {"workers": [], "lease_s": 5.0}
    # When a remote worker reports with the worker token
    sent = await api.post("/api/v1/worker/processes", json=info(), headers=as_worker())
    assert sent.status == 204
    # Then the API lists it, alive, with the lease it was judged by
    body = await (await api.get("/api/v1/workers")).json()
    assert body["lease_s"] == 5.0
    assert [(w["name"], w["status"], w["remote"]) for w in body["workers"]] == [
        ("gpu-box:101", "alive", True)]
    # And when it says it stopped, it is listed stopped
    sent = await api.post("/api/v1/worker/processes", json=info(stopped=True),
                          headers=as_worker())
    assert sent.status == 204
    body = await (await api.get("/api/v1/workers")).json()
    assert [(w["name"], w["status"]) for w in body["workers"]] == [("gpu-box:101", "stopped")]


@pytest.mark.parametrize(("body", "field"), [
    (info(pid="x"), "pid"),
    (info(gpus=[1]), "gpus"),
    (info(stopped=1), "stopped"),
    ({**info(), "secret": 1}, "secret"),
    ({key: value for key, value in info().items() if key != "queues"}, "queues"),
])
async def test_an_invalid_report_over_http_is_a_422_naming_the_field(api, db, body, field):
    refused = await api.post("/api/v1/worker/processes", json=body, headers=as_worker())
    assert refused.status == 422
    assert (await refused.json())["error"]["field"] == field
    assert (await (await api.get("/api/v1/workers")).json())["workers"] == []


async def test_a_report_without_the_worker_token_is_refused(api, db):
    refused = await api.post("/api/v1/worker/processes", json=info(), headers=as_worker("no"))
    assert refused.status == 401
    assert (await (await api.get("/api/v1/workers")).json())["workers"] == []


async def test_the_workers_page_shows_alive_and_lost_workers_and_their_runs(api, db,
                                                                            monkeypatch):
    # Given a worker that went silent long ago, and one alive running a run
    with monkeypatch.context() as earlier:
        earlier.setattr("service.workers.registry.utcnow", lambda: utcnow() - timedelta(hours=1))
        report_worker(info("gone-box", 7, gpus=[]), RETENTION_S)
        report_worker(info("done-box", 9, stopped=True), RETENTION_S)
    report_worker(info("busy-box", 8, queues=[TRAIN_QUEUE, AGGREGATE_QUEUE]), RETENTION_S)
    [run_id] = make_runs(("running", "busy-box:8"))
    # When the page is opened
    page = await api.get("/workers")
    html = await page.text()
    # Then both are there, their status marked, the run a link, the page in the navigation
    assert page.status == 200
    assert '<tr data-worker="busy-box:8" data-status="alive">' in html
    assert '<tr data-worker="gone-box:7" data-status="lost">' in html
    assert '<span class="badge alive">alive</span>' in html
    assert '<tr data-worker="done-box:9" data-status="stopped">' in html
    assert '<span class="badge lost">lost</span>' in html
    assert f'<a href="/runs/{run_id}">run {run_id}</a>' in html
    assert f"{TRAIN_QUEUE}, {AGGREGATE_QUEUE}" in html and "0, 1" in html
    assert '<a class="right" href="/workers">Workers</a>' in html


async def test_the_workers_page_without_workers_says_so(api, db):
    html = await (await api.get("/workers")).text()
    assert "No worker has reported yet" in html


async def test_the_run_page_shows_the_host_that_ran_it(api, db):
    [ran, waiting] = make_runs(("succeeded", "gpu-box.lan:4242"), ("queued", None))
    html = await (await api.get(f"/runs/{ran}")).text()
    assert re.search(r'<dt>Host</dt><dd id="run-host">gpu-box\.lan</dd>', html)
    live = await (await api.get(f"/runs/{waiting}/live")).text()
    assert '<dt>Host</dt><dd id="run-host">—</dd>' in live


# --- the worker middleware -------------------------------------------------------------------

@pytest.fixture
def registered(stub_broker):
    """Add a WorkerRegistry to the stub broker for one test (it is shared by every test)."""
    added = []

    def add(registry: WorkerRegistry) -> WorkerRegistry:
        stub_broker.add_middleware(registry)
        added.append(registry)
        return registry

    yield add
    for registry in added:
        stub_broker.middleware.remove(registry)


def test_a_worker_reports_at_boot_and_then_every_few_seconds_until_it_stops(
        stub_broker, db, registered):
    # Given a worker with the registry, reporting into a list every 50 ms
    reports: list[dict] = []
    registered(WorkerRegistry(report=reports.append, every_s=0.05, gpus=["0", "1"],
                              remote=True))
    worker = Worker(stub_broker, worker_timeout=100, worker_threads=2)
    # When it boots and runs a while
    worker.start()
    try:
        wait_for(lambda: len(reports) >= 3, 5, "three reports", every_s=0.01)
    finally:
        worker.stop()
    # Then it reported who it is, what it takes, from which code
    stopped_at = len(reports)
    assert reports[0] == {"name": this_worker(), "host": this_worker().rsplit(":", 1)[0],
                          "pid": os.getpid(), "threads": 2, "gpus": ["0", "1"],
                          "version": reports[0]["version"],
                          "queues": sorted([AGGREGATE_QUEUE, TRAIN_QUEUE]), "remote": True}
    assert reports[0]["version"] and reports[1] == reports[0]
    # And its reports are what the API accepts
    report_worker(reports[0], RETENTION_S)
    assert [w["name"] for w in list_workers(LEASE_S, RETENTION_S)] == [this_worker()]
    # And once stopped, it reports no more: its reporting thread has ended
    wait_for(lambda: not [t for t in threading.enumerate()
                          if t.name == "sweeplab-worker-registry"], 5, "the reports to end")
    assert len(reports) == stopped_at
    assert not [t for t in threading.enumerate() if t.name == "sweeplab-worker-registry"]


def test_a_failing_report_is_logged_and_the_next_one_still_goes(stub_broker, db, registered,
                                                                caplog):
    # Given an API that is down for the first two reports
    calls: list[dict] = []

    def flaky(report: dict) -> None:
        calls.append(report)
        if len(calls) <= 2:
            raise ConnectionError("API unreachable")

    registered(WorkerRegistry(report=flaky, every_s=0.02))
    worker = Worker(stub_broker, worker_timeout=100, queues={TRAIN_QUEUE},
                    worker_threads=1)
    # When the worker runs
    worker.start()
    try:
        wait_for(lambda: len(calls) >= 4, 5, "four reports", every_s=0.01)
    finally:
        worker.stop()
    # Then the failures were warnings, the reports went on, and it names only its own queue
    assert "API unreachable" in caplog.text
    assert calls[-1]["queues"] == [TRAIN_QUEUE] and calls[-1]["gpus"] == []
    assert calls[-1]["remote"] is False


@pytest.mark.parametrize("remote", [True, False])
def test_a_remote_worker_whose_first_report_fails_refuses_to_start(stub_broker, db, registered,
                                                                   remote):
    # Given a worker whose reports fail (the API refuses its token, or cannot be reached)
    calls: list[dict] = []

    def refused(report: dict) -> None:
        calls.append(report)
        raise ConnectionError("the API at http://api:8080 answers 401")

    registered(WorkerRegistry(report=refused, every_s=0.02, remote=remote))
    worker = Worker(stub_broker, worker_timeout=100, queues={TRAIN_QUEUE},
                    worker_threads=1)
    if remote:
        # When a remote one starts, it refuses to, saying why, before any worker thread runs
        with pytest.raises(SystemExit, match="^sweeplab worker refuses to start: the API at "
                                             "http://api:8080 answers 401$"):
            worker.start()
        assert worker.workers == [] and len(calls) == 1
        return
    # But a local one (its store is the database) starts, and tries again later
    worker.start()
    try:
        wait_for(lambda: len(calls) >= 2, 5, "two reports", every_s=0.01)
    finally:
        worker.stop()


def test_a_worker_stopped_cleanly_says_so_in_its_last_report(stub_broker, db, registered):
    # Given a worker reporting every 20 ms
    reports: list[dict] = []
    registered(WorkerRegistry(report=reports.append, every_s=0.02))
    worker = Worker(stub_broker, worker_timeout=100, queues={TRAIN_QUEUE},
                    worker_threads=1)
    worker.start()
    try:
        wait_for(lambda: len(reports) >= 2, 5, "two reports", every_s=0.01)
    finally:
        # When it stops
        worker.stop()
    # Then its last report, and only that one, says it stopped, and the API takes it so
    assert reports[-1] == {**reports[0], "stopped": True}
    assert all("stopped" not in report for report in reports[:-1])
    report_worker(reports[0], RETENTION_S)
    report_worker(reports[-1], RETENTION_S)
    assert [w["status"] for w in list_workers(LEASE_S, RETENTION_S)] == ["stopped"]
