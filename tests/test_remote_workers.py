"""Remote workers: training hosts that share nothing with the API but the network.

Each remote host is a network namespace (tests.netns_support.RemoteHost) that reaches the API
and RabbitMQ over a veth, and in which the API's data directory is hidden under an empty tmpfs.
The API runs as a real process with both tokens; the only local worker consumes the aggregate
queue. The fake script stands in for train.py except in one test, which trains the real one on
the bundled digits.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_support import (
    FAKE_SCRIPTS,
    ROOT,
    Stack,
    VirtualHost,
    best_of,
    multipart,
    small_dataset,
    start_sweep,
    terminal_events_per_run,
)
from tests.helpers import FAKE_TRAIN, png_bytes, wait_for
from tests.netns_support import (
    DRAMATIQ,
    BoundTcpProxy,
    Hub,
    RemoteHost,
    free_port_on,
    ip,
    sees,
    worker_pid,
)

pytestmark = pytest.mark.e2e
API_TOKEN = "api-token-for-the-remote-tests"
WORKER_TOKEN = "worker-token-for-the-remote-tests"
RABBIT_PORT = 5672
REACH_PROBE = ("import socket, sys; c = socket.create_connection((sys.argv[1], "
               "int(sys.argv[2])), timeout=2); sys.stdout.write(c.recv(16).decode())")


class RemoteStack(Stack):
    """The API on the hub address with both tokens; locally only an aggregate consumer."""

    def __init__(self, data_dir: Path, broker_url: str, address: str, **env: str) -> None:
        super().__init__(data_dir, broker_url, SWEEPLAB_API_TOKEN=API_TOKEN,
                         SWEEPLAB_WORKER_TOKEN=WORKER_TOKEN, **env)
        self.port = free_port_on(address)
        self.address = address
        self.base = f"http://{address}:{self.port}"

    def start_api(self) -> None:
        self.api = self._spawn([sys.executable, "-m", "service", "--host", self.address,
                                "--port", str(self.port)], "api.log")
        self.wait_healthy()

    def start_aggregator(self) -> None:
        self.worker_starts += 1
        self.worker = self._spawn([DRAMATIQ, "actors", "--queues", "sweeplab_aggregate",
                                   "--processes", "1", "--threads", "2"],
                                  f"worker-{self.worker_starts}.log")

    def request(self, method: str, path: str, body: Any = None, data: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {API_TOKEN}", **(headers or {})}
        return super().request(method, path, body, data, headers)


@dataclass
class Lab:
    """One API, one vhost, one hub address, and as many remote hosts as a test adds."""

    stack: RemoteStack
    hub: Hub
    broker_url: str
    tmp: Path
    cleanup: ExitStack
    hosts: list[RemoteHost] = field(default_factory=list)

    @property
    def api_data(self) -> Path:
        return self.stack.data_dir

    def add_host(self, name: str, threads: int = 2, ready: bool = True,
                 **env: str) -> RemoteHost:
        """A remote host running a worker; `ready`: wait until the worker is ready."""
        host = self.cleanup.enter_context(
            RemoteHost(name, self.hub, self.api_data.parent, self.tmp / name))
        self.hosts.append(host)
        host.start_worker(self.worker_env(host, env), threads)
        if ready:
            host.wait_ready()
        return host

    def worker_env(self, host: RemoteHost, extra: dict[str, str]) -> dict[str, str]:
        base = {k: v for k, v in self.stack.env.items() if not k.startswith("SWEEPLAB_")}
        return {**base, "SWEEPLAB_API_URL": self.stack.base, "SWEEPLAB_WORKER_TOKEN": WORKER_TOKEN,
                "SWEEPLAB_BROKER_URL": self.broker_url, "SWEEPLAB_DATA_DIR": str(host.data_dir),
                "SWEEPLAB_LEASE_S": self.stack.env["SWEEPLAB_LEASE_S"], **FAKE_SCRIPTS, **extra}

    def host_of(self, run: dict) -> str | None:
        """Which remote host's process holds (or last held) a run, by the pid in `run.worker`
        (the API does not show it; the hostname is the same in every namespace)."""
        with sqlite3.connect(self.api_data / "sweeplab.db", timeout=30) as connection:
            worker = connection.execute("SELECT worker FROM run WHERE id = ?",
                                        (run["id"],)).fetchone()[0]
        pid = worker_pid(worker) if worker else None
        return next((host.name for host in self.hosts if pid in host.seen_pids), None)

    def logs(self) -> str:
        parts = [f"--- api.log\n{self.stack.log('api.log')}"]
        parts += [f"--- {host.name}\n{host.log(8000)}" for host in self.hosts]
        return "\n".join(parts)


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    with ExitStack() as cleanup:
        def make(lease_s: str = "4", **env: str) -> Lab:
            hub = cleanup.enter_context(Hub())
            vhost_url = cleanup.enter_context(VirtualHost())
            rabbit = BoundTcpProxy(RABBIT_PORT, hub.address)
            rabbit.up()
            cleanup.callback(rabbit.down)
            remote_url = vhost_url.replace(f"127.0.0.1:{RABBIT_PORT}",
                                           f"{hub.address}:{rabbit.port}")
            stack = RemoteStack(tmp_path / "api" / "data", vhost_url, hub.address,
                                SWEEPLAB_LEASE_S=lease_s, **{**FAKE_SCRIPTS, **env})
            cleanup.callback(stack.stop)
            stack.start_api()
            stack.start_aggregator()
            return Lab(stack, hub, remote_url, tmp_path, cleanup)

        yield make


def finish(lab: Lab, experiment_id: int, timeout: float = 90) -> dict:
    try:
        return lab.stack.wait_for_experiment(experiment_id, timeout=timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{lab.logs()}") from None


def runs_of(lab: Lab, experiment_id: int) -> list[dict]:
    status, body = lab.stack.get(f"/api/v1/experiments/{experiment_id}")
    assert status == 200, body
    return body["runs"]


def counts_of(lab: Lab, experiment_id: int) -> dict[str, int]:
    status, body = lab.stack.get(f"/api/v1/experiments/{experiment_id}")
    assert status == 200, body
    return body["counts"]


def running_on(lab: Lab, host: RemoteHost, experiment_id: int) -> list[dict]:
    host.pids()
    return [run for run in runs_of(lab, experiment_id)
            if run["status"] == "running" and lab.host_of(run) == host.name]


def assert_isolated(lab: Lab) -> None:
    """No remote host could see the API's data directory, nor made a database of its own."""
    database = lab.api_data / "sweeplab.db"
    assert sees(os.getpid(), database), "the check itself is broken: this process sees it"
    for host in lab.hosts:
        host.check_isolation(lab.api_data)
        for pid in host.pids():
            assert not sees(pid, database), f"{host.name} pid {pid} sees the API's database"
        assert not (host.data_dir / "sweeplab.db").exists(), f"{host.name} made a database"


def assert_each_run_once(lab: Lab, done: dict, runs: int = 27) -> None:
    assert done["status"] == "completed", done["counts"]
    assert done["counts"]["succeeded"] == runs, (done["counts"], lab.logs())
    assert terminal_events_per_run(lab.api_data) == {run["id"]: 1 for run in done["runs"]}
    assert done["best"]["run_id"] == best_of(done["runs"])["id"]


def api_lines_from(lab: Lab, host: RemoteHost, pattern: str) -> list[str]:
    """The API's access log lines for requests from `host` that match `pattern`."""
    log = lab.stack.log("api.log", tail=10**8)
    return [line for line in log.splitlines()
            if f" {host.address} " in f" {line} " and re.search(pattern, line)]


def test_a_remote_host_reaches_the_hub_only_and_cannot_see_the_api_data(tmp_path):
    # Given a hub address with a listener on it, and a remote host hiding the API's directory
    hidden, api_data = tmp_path / "api", tmp_path / "api" / "data"
    api_data.mkdir(parents=True)
    (api_data / "sweeplab.db").write_text("not for remote eyes")
    with Hub() as hub, RemoteHost("a", hub, hidden, tmp_path / "a") as host:
        port = free_port_on(hub.address)
        served = _serve_hello(hub.address, port)
        probe = [sys.executable, "-c", REACH_PROBE, hub.address, str(port)]
        # When a process in the namespace connects, then the link is cut, then restored
        reached = host.run(probe)
        host.link_down()
        cut = host.run(probe)
        host.link_up()
        again = host.run(probe)
        served.close()
        # Then it reaches the hub except while cut, and sees only an empty tmpfs
        assert (reached.returncode, reached.stdout) == (0, "hello"), reached
        assert cut.returncode != 0, cut
        assert (again.returncode, again.stdout) == (0, "hello"), again
        host.check_isolation(api_data)
        namespace, link = host.namespace, host.host_link
    # ...and nothing of it is left behind
    assert namespace not in ip("netns", "list") and link not in ip("link", "show")


def _serve_hello(address: str, port: int) -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            client.sendall(b"hello")
            client.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_two_remote_hosts_run_the_default_sweep(make_lab):
    # Given the API and two remote hosts, and no local training worker
    lab = make_lab(FAKE_TRAIN_SLEEP="0.3")
    for name in ("host-a", "host-b"):
        lab.add_host(name, threads=2, FAKE_TRAIN_SLEEP="0.3")
    model_id = small_dataset(lab.stack)
    # When the default 27-run sweep runs
    done = finish(lab, start_sweep(lab.stack, model_id))
    # Then every grid point ran once, on both hosts, and the best is the highest
    assert_each_run_once(lab, done)
    assert all(run["attempts"] == 1 for run in done["runs"])
    assert {lab.host_of(run) for run in done["runs"]} == {"host-a", "host-b"}
    # ...the API predicts with the best run's model, whose folder came back to the API's host
    body, headers = multipart({"image": ("x.png", png_bytes(3))})
    status, predicted = lab.stack.request("POST", f"/api/v1/models/{model_id}/predict",
                                          data=body, headers=headers)
    assert status == 200, (predicted, lab.logs())
    best = done["best"]
    assert predicted["params"] == best["params"] and predicted["output"]["label"] == "7"
    model_file = lab.api_data / "runs" / str(best["run_id"]) / "model.txt"
    params = best["params"]
    assert model_file.read_text().split() == [str(params[key]) for key in ("i", "j", "k")]
    # ...each host's worker process is listed as a remote worker...
    _, listed = lab.stack.get("/api/v1/workers")
    remote = {worker["pid"] for worker in listed["workers"] if worker["remote"]}
    assert all(len(remote & host.seen_pids) == 1 for host in lab.hosts), listed
    # ...and no remote host could see the API's data directory
    assert_isolated(lab)


def test_real_train_py_on_the_sample_digits_on_two_remote_hosts(make_lab, tmp_path):
    # Given the real train.py and test.py, the bundled digits, and two one-thread remote hosts
    scripts = {"SWEEPLAB_TRAIN_SCRIPT": "train.py", "SWEEPLAB_TEST_SCRIPT": "test.py"}
    lab = make_lab(**scripts)
    for name in ("host-a", "host-b"):
        lab.add_host(name, threads=1, **scripts)
    sample = tmp_path / "sample"
    subprocess.run([sys.executable, "scripts/make_sample_data.py", str(sample)], cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    model_id = upload_digits(lab, sample / "train.zip")
    # When 27 runs train, with few steps (k) so that the sweep stays short on two cores
    grid = {"i": [0.001, 0.01, 0.1], "j": [1, 2, 4], "k": [50, 100, 200]}
    done = finish(lab, start_sweep(lab.stack, model_id, grid), timeout=240)
    # Then every run succeeded once, on both hosts, and the best is really good
    assert_each_run_once(lab, done)
    assert {lab.host_of(run) for run in done["runs"]} == {"host-a", "host-b"}
    assert done["best"]["accuracy"] >= 0.85, done["best"]
    # ...and the API predicts held-out digits with the best run's model, mostly right
    held_out = sorted((sample / "heldout").glob("*.png"))[::7]  # digits 0, 3 and 7
    right = sum(predict(lab, model_id, image) == image.name.split("_")[0] for image in held_out)
    assert right >= 2, f"{right} of {len(held_out)} predictions right"
    assert_isolated(lab)


def upload_digits(lab: Lab, archive: Path) -> int:
    status, model = lab.stack.request("POST", "/api/v1/models", {"name": "digits"})
    assert status == 201, model
    body, headers = multipart({"images": ("train.zip", archive.read_bytes())})
    status, uploaded = lab.stack.request("POST", f"/api/v1/models/{model['id']}/images",
                                         data=body, headers=headers)
    assert status == 201 and uploaded["added"] > 1700, uploaded
    return model["id"]


def predict(lab: Lab, model_id: int, image: Path) -> str:
    body, headers = multipart({"image": (image.name, image.read_bytes())})
    status, answer = lab.stack.request("POST", f"/api/v1/models/{model_id}/predict",
                                       data=body, headers=headers)
    assert status == 200, answer
    return str(answer["output"]["label"])


def test_a_remote_host_killed_mid_sweep_has_its_runs_taken_over(make_lab):
    # Given a 27-run sweep of 1.5 s runs on two remote hosts of two threads, 3 s leases
    lab = make_lab(lease_s="3")
    host_a, host_b = (lab.add_host(name, threads=2, FAKE_TRAIN_SLEEP="1.5")
                      for name in ("host-a", "host-b"))
    model_id = small_dataset(lab.stack)
    experiment_id = start_sweep(lab.stack, model_id)
    wait_for(lambda: len(running_on(lab, host_a, experiment_id)) == 2, 30,
             "host-a to run two runs")
    # When the whole of host-a is killed with SIGKILL, its worker and every script
    host_a.kill_all()
    victims = {run["id"] for run in running_on(lab, host_a, experiment_id)}
    done = finish(lab, experiment_id)
    # Then host-b took over host-a's runs once their lease expired, and ran each grid point once
    assert victims, "host-a had no run left running when it was killed"
    assert_each_run_once(lab, done)
    taken_over = [run for run in done["runs"] if run["id"] in victims]
    assert all(run["attempts"] == 2 and lab.host_of(run) == "host-b" for run in taken_over), \
        taken_over
    assert host_a.pids() == [] and host_b.script_pids() == []


SLEEP_BY_J = '''
import os, sys
# The fake script, sleeping as long as SLEEP_J<j> says (FAKE_TRAIN_SLEEP otherwise). Its text
# is carried in this file: the sandbox shows a script its own file, not tests/scripts/.
j = sys.argv[sys.argv.index("--j") + 1]
default = os.environ.get("FAKE_TRAIN_SLEEP", "0.1")
os.environ["FAKE_TRAIN_SLEEP"] = os.environ.get(f"SLEEP_J{j}", default)
exec(compile(FAKE_TRAIN_TEXT, "fake_train.py", "exec"), {"__name__": "__main__"})
'''


def two_runs_on_one_host(lab: Lab, script_dir: Path) -> tuple[RemoteHost, int]:
    """host-a runs both runs of a sweep: j=1 for 60 s, j=2 for 3 s (less than a lease)."""
    script = script_dir / "sleep_by_j.py"
    script.write_text(f"FAKE_TRAIN_TEXT = {FAKE_TRAIN.read_text()!r}\n{SLEEP_BY_J}")
    host_a = lab.add_host("host-a", threads=2, SWEEPLAB_TRAIN_SCRIPT=str(script),
                          SLEEP_J1="60", SLEEP_J2="3")
    model_id = small_dataset(lab.stack)
    experiment_id = start_sweep(lab.stack, model_id, {"i": [0.1], "j": [1, 2], "k": [1]})
    wait_for(lambda: len(running_on(lab, host_a, experiment_id)) == 2, 30,
             "host-a to run both runs")
    wait_for(lambda: len(host_a.script_pids()) == 2, 10, "host-a's two scripts to start")
    return host_a, experiment_id


def test_a_partitioned_host_stops_its_script_and_its_late_result_is_refused(make_lab, tmp_path):
    # Given host-a running two runs: j=1 outlives the lease, j=2 ends during the partition
    lab = make_lab(lease_s="4")
    host_a, experiment_id = two_runs_on_one_host(lab, tmp_path)
    # When host-a's link goes down, and host-b joins
    cut_at = time.monotonic()
    host_a.link_down()
    host_b = lab.add_host("host-b", threads=2, ready=False, FAKE_TRAIN_SLEEP="0.3")
    wait_for(lambda: host_a.script_pids() == [], 40, "host-a to stop its script")
    stopped_after = time.monotonic() - cut_at
    host_b.wait_ready()
    done = finish(lab, experiment_id, timeout=60)
    # Then host-b took both runs over and each has one result
    assert_each_run_once(lab, done, runs=2)
    assert all(run["attempts"] == 2 and lab.host_of(run) == "host-b" for run in done["runs"])
    # When the link comes back and host-a sends a folder and a result for attempt 1
    host_a.link_up()
    stale, late = sorted(done["runs"], key=lambda run: run["params"]["j"])
    statuses = send_late_result(lab, host_a, stale["id"])
    # Then both are refused, and the run folder on the API's host is still host-b's
    assert statuses == [409, 200, {"recorded": False}], statuses
    assert not (lab.api_data / "runs" / str(stale["id"]) / "late.txt").exists()
    # ...host-a had stopped its script once the lease ran out: 4 s, tried every third of it
    # (at most 2 s apart), each try waiting up to a third of the lease, and 3 s of slack for a
    # busy machine...
    assert stopped_after < 4 + 2 + 4 / 3 + 3, f"script stopped {stopped_after:.1f} s after the cut"
    assert "lease not renewed" in host_a.log(), host_a.log()
    # ...and its own late result of j=2 (its script ended during the cut) was refused too
    wait_for(lambda: f"run {late['id']} attempt 1: the API refused it" in host_a.log(), 45,
             "host-a's late result to be refused")
    # (its outcome and folder in one request, refused before the folder is read)
    assert api_lines_from(lab, host_a, rf"/worker/runs/{late['id']}/result HTTP/1.1\" 409"), \
        lab.stack.log("api.log")
    assert runs_of(lab, experiment_id) == done["runs"]
    assert terminal_events_per_run(lab.api_data) == {run["id"]: 1 for run in done["runs"]}
    for run in done["runs"]:  # the logs are host-b's attempt's alone
        _, log = lab.stack.get(f"/api/v1/runs/{run['id']}/logs")
        assert str(host_b.data_dir) in log and str(host_a.data_dir) not in log, log
    assert host_b.script_pids() == []


LATE_PROBE = """
import io, json, sys, tarfile, urllib.error, urllib.request
base, token, run_id = sys.argv[1:]
def send(method, path, data, kind):
    request = urllib.request.Request(base + path, data=data, method=method, headers={
        "Authorization": "Bearer " + token, "Content-Type": kind})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or "null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
buffer = io.BytesIO()
with tarfile.open(fileobj=buffer, mode="w") as tar:
    info = tarfile.TarInfo("late.txt")
    info.size = 4
    tar.addfile(info, io.BytesIO(b"late"))
folder, _ = send("PUT", f"/api/v1/worker/runs/{run_id}/folder?attempt=1&worker=late",
                 buffer.getvalue(), "application/x-tar")
result = {"attempt": 1, "worker": "late", "status": "failed", "accuracy": None,
          "exit_code": 1, "error": "a late failure must not replace a result", "duration_s": 1.0}
status, body = send("POST", f"/api/v1/worker/runs/{run_id}/result",
                    json.dumps(result).encode(), "application/json")
print(json.dumps([folder, status, body]))
"""


def send_late_result(lab: Lab, host: RemoteHost, run_id: int) -> list:
    """From inside `host`, with the worker token: attempt 1's folder, then its result."""
    done = host.run([sys.executable, "-c", LATE_PROBE, lab.stack.base, WORKER_TOKEN,
                     str(run_id)])
    assert done.returncode == 0, done
    return json.loads(done.stdout)


def test_the_api_restarted_mid_sweep_loses_no_remote_result(make_lab):
    # Given a 27-run sweep of 1 s runs on two remote hosts; the default 30 s lease, well above
    # the outage (on a busy machine the API takes over 10 s to start), so none is taken over
    lab = make_lab(lease_s="30")
    hosts = [lab.add_host(name, threads=2, FAKE_TRAIN_SLEEP="1") for name in ("a", "b")]
    model_id = small_dataset(lab.stack)
    experiment_id = start_sweep(lab.stack, model_id)
    wait_for(lambda: (counts := counts_of(lab, experiment_id))["running"] >= 3
             and counts["succeeded"] >= 4, 30, "the sweep to get going")
    # When the API is killed with SIGKILL, and started again on the same port once a run has
    # ended meanwhile (its folder and result must wait for the API)
    lab.stack.kill_api()
    waited = re.compile(r"API unreachable \(POST /runs/\d+/result")
    wait_for(lambda: any(waited.search(host.log()) for host in hosts), 30,
             "a result to wait for the API")
    lab.stack.start_api()
    done = finish(lab, experiment_id)
    # Then results that waited for the API were sent again, and every run has its one result,
    # from its first attempt
    assert any(waited.search(host.log()) for host in hosts), lab.logs()
    assert_each_run_once(lab, done)
    assert all(run["attempts"] == 1 for run in done["runs"]), \
        [(run["id"], run["attempts"]) for run in done["runs"] if run["attempts"] != 1]
