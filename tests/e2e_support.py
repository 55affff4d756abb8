"""End-to-end support: a private RabbitMQ virtual host, the API and workers as real processes,
and what the tests do with them (a small dataset, a sweep, a remote worker). The fixtures that
start stacks are in tests/conftest.py.

Each stack gets its own virtual host on the shared RabbitMQ, so tests never eat each other's
messages and never touch the broker's configuration. There is no skipping: without a RabbitMQ
the tests fail and say so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FAKE_PREDICT, FAKE_TRAIN, png_bytes, zip_bytes

ROOT = Path(__file__).resolve().parent.parent
FAKE_SCRIPTS = {"SWEEPLAB_TRAIN_SCRIPT": str(FAKE_TRAIN),
                "SWEEPLAB_TEST_SCRIPT": str(FAKE_PREDICT)}
WORKER_TOKEN = "worker-secret"  # the remote workers' on this host (tests/conftest.py remote_stack)
# 16 configurations for FAKE_TRAIN_MODE=hopeless, whose j=1 curves never learn; the best is
# i=0.8, j=2
HOPELESS_GRID = {"i": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "j": [1, 2], "k": [10]}


def rabbitmqctl(*args: str) -> None:
    command = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    if not Path(command).exists():
        pytest.fail("rabbitmqctl not found: the end-to-end tests need a local RabbitMQ "
                    "(scripts/ensure_rabbitmq.sh installs and starts one)")
    done = subprocess.run([command, *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")


class VirtualHost:
    """A throw-away virtual host on the local RabbitMQ, for one stack's queues."""

    def __init__(self) -> None:
        self.name = f"sweeplab-test-{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> str:
        rabbitmqctl("add_vhost", self.name)
        rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def __exit__(self, *exc: object) -> None:
        rabbitmqctl("delete_vhost", self.name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop a process started in its own session: SIGTERM to its group, then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Stack:
    """The API (`python -m service`) and a worker (`dramatiq actors`) as real processes."""

    def __init__(self, data_dir: Path, broker_url: str, threads: int = 2,
                 processes: int = 1, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.threads = threads
        self.processes = processes
        self.env = {**os.environ, "SWEEPLAB_DATA_DIR": str(data_dir),
                    "SWEEPLAB_BROKER_URL": broker_url, "PYTHONUNBUFFERED": "1", **env}
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.logs = data_dir.parent / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.worker_starts = 0

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / log_name, "ab")  # noqa: SIM115 (kept open for the child)
        return subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def start_api(self) -> None:
        self.api = self._spawn([sys.executable, "-m", "service", "--port", str(self.port)],
                               "api.log")
        self.wait_healthy()

    def start_worker(self) -> None:
        self.worker_starts += 1
        dramatiq = str(Path(sys.executable).parent / "dramatiq")
        self.worker = self._spawn([dramatiq, "actors", "--processes", str(self.processes),
                                   "--threads", str(self.threads)],
                                  f"worker-{self.worker_starts}.log")

    def worker_children(self) -> list[int]:
        assert self.worker is not None
        path = Path(f"/proc/{self.worker.pid}/task/{self.worker.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            assert self.api is None or self.api.poll() is None, self.log("api.log")
            time.sleep(0.2)
        raise AssertionError(f"API not healthy after {timeout} s\n{self.log('api.log')}")

    def log(self, name: str, tail: int = 5000) -> str:
        path = self.logs / name
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def kill_api(self) -> None:
        assert self.api is not None
        os.killpg(self.api.pid, signal.SIGKILL)
        self.api.wait()

    def request(self, method: str, path: str, body: Any = None,
                data: bytes | None = None, headers: dict[str, str] | None = None
                ) -> tuple[int, Any]:
        if body is not None:
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def wait_for_experiment(self, experiment_id: int, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.get(f"/api/v1/experiments/{experiment_id}")
            assert status == 200, body
            if body["status"] in ("completed", "failed", "cancelled"):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"experiment still {body['status']}: {body['counts']}\n"
                                     f"{self.log(f'worker-{self.worker_starts}.log')}")
            time.sleep(0.3)

    def stop(self) -> None:
        for process in (self.worker, self.api):
            if process is not None:
                stop_group(process, timeout=20)


def multipart(fields: dict[str, tuple[str, bytes] | str]) -> tuple[bytes, dict[str, str]]:
    """Encode a multipart/form-data body: name -> (filename, bytes) for files, or text."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data = value
            head = (f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n")
        else:
            head, data = f'Content-Disposition: form-data; name="{name}"\r\n\r\n', value.encode()
        parts.append(f"--{boundary}\r\n".encode() + head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def script_processes(data_dir: Path) -> list[int]:
    """Pids of live scripts started by this stack (they carry its data dir and a run marker)."""
    found = []
    needle = f"SWEEPLAB_DATA_DIR={data_dir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        is_script = any(item.startswith(b"SWEEPLAB_RUN_ID=") for item in environ)
        if needle in environ and is_script and state != "Z":
            found.append(int(entry.name))
    return found


# --- what the end-to-end tests do with a stack --------------------------------------------------

def small_dataset(stack: Stack, name: str = "e2e", seed: int = 0) -> int:
    """A model with 8 images, 4 of each of labels 1 and 2, uploaded as a zip; the same seed
    gives the same images, another seed others."""
    status, model = stack.request("POST", "/api/v1/models", {"name": name})
    assert status == 201, model
    shades = [seed * 8 + offset for offset in range(8)]
    archive = zip_bytes({f"{1 + n % 2}/{n}.png": png_bytes(shade % 256, 8 + shade // 256)
                         for n, shade in enumerate(shades)})
    body, headers = multipart({"images": ("train.zip", archive)})
    status, uploaded = stack.request("POST", f"/api/v1/models/{model['id']}/images",
                                     data=body, headers=headers)
    assert status == 201 and uploaded["added"] == 8, uploaded
    return model["id"]


def start_sweep(stack: Stack, model_id: int, grid: dict | None = None) -> int:
    """An experiment over `grid` (the default one if None), started: its id."""
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                    {"grid": grid} if grid else {})
    assert status == 201, created
    return created["id"]


def sweep(stack: Stack, model_id: int, grid: dict | None = None) -> dict:
    return stack.wait_for_experiment(start_sweep(stack, model_id, grid))


def best_of(runs: list[dict]) -> dict:
    succeeded = [run for run in runs if run["status"] == "succeeded"]
    return min(succeeded, key=lambda run: (-run["accuracy"], run["id"]))


def terminal_events_per_run(data_dir: Path) -> dict[int, int]:
    with sqlite3.connect(data_dir / "sweeplab.db") as connection:
        rows = connection.execute(
            "SELECT run_id, COUNT(*) FROM run_event WHERE to_status IN "
            "('succeeded', 'failed', 'cancelled') GROUP BY run_id").fetchall()
    return dict(rows)


def wait_until_running(stack: Stack, experiment_id: int, succeeded_at_least: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, body = stack.get(f"/api/v1/experiments/{experiment_id}")
        if body["counts"]["running"] >= 2 and body["counts"]["succeeded"] >= succeeded_at_least:
            return
        time.sleep(0.2)
    raise AssertionError(f"runs never got going: {body['counts']}")


def start_remote_worker(stack: Stack, data_dir: Path, name: str,
                        **env: str) -> subprocess.Popen[bytes]:
    """`dramatiq actors --queues sweeplab_train` knowing only broker, API URL and token."""
    remote_env = {key: value for key, value in stack.env.items()
                  if key not in ("SWEEPLAB_DATABASE_URL",)}
    remote_env.update({"SWEEPLAB_DATA_DIR": str(data_dir), "SWEEPLAB_API_URL": stack.base,
                       "SWEEPLAB_WORKER_TOKEN": WORKER_TOKEN, **env})
    log = open(stack.logs / f"{name}.log", "ab")  # noqa: SIM115 (kept open for the child)
    dramatiq = str(Path(sys.executable).parent / "dramatiq")
    return subprocess.Popen([dramatiq, "actors", "--queues", "sweeplab_train", "--processes",
                             "1", "--threads", "2"], cwd=ROOT,
                            env=remote_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
