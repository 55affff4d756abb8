"""A private RabbitMQ node for tests that stop, restart or reconfigure the broker.

Its own node name, ports, configuration, Erlang cookie and data folder, all under a temporary
directory: the shared node that other tests and CI use is never touched.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e_support import free_port, stop_group

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class PrivateRabbit:
    def __init__(self, folder: Path, consumer_timeout_ms: int | None = None) -> None:
        if not SERVER.exists():
            pytest.fail(f"{SERVER} not found: these tests start a private RabbitMQ node")
        self.folder = folder
        self.port = free_port()
        self.name = f"sweeplab{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config(consumer_timeout_ms)
        self.env = {
            **os.environ,
            "HOME": str(folder),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _write_config(self, consumer_timeout_ms: int | None) -> None:
        for sub in ("mnesia", "log"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        conf = f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
        advanced = "[]."
        if consumer_timeout_ms is not None:
            conf += f"consumer_timeout = {consumer_timeout_ms}\n"
            # RabbitMQ checks consumer timeouts once per channel tick (a minute by default).
            advanced = "[{rabbit, [{channel_tick_interval, 200}]}]."
        (self.folder / "rabbitmq.conf").write_text(conf)
        (self.folder / "advanced.config").write_text(advanced + "\n")
        (self.folder / "enabled_plugins").write_text("[].\n")
        (self.folder / "rabbitmq-env.conf").write_text("")

    def _reachable(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self, timeout: float = 60) -> None:
        log = open(self.folder / "server.out", "ab")  # noqa: SIM115 (kept for the child)
        self.process = subprocess.Popen([str(SERVER)], cwd=self.folder, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._reachable():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("private RabbitMQ did not start:\n" +
                                     (self.folder / "server.out").read_text()[-3000:])
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        stop_group(self.process, timeout=60)  # the Erlang VM stops cleanly on SIGTERM
        deadline = time.monotonic() + 10
        while self._reachable() and time.monotonic() < deadline:
            time.sleep(0.1)
