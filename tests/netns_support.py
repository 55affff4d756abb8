"""Remote training hosts on one machine: network namespaces joined to the API's host by veths.

Each `RemoteHost` is a network namespace `swl-<id>` with a veth pair: 10.201.N.1/24 on the host
side, 10.201.N.2/24 inside. The API and a forwarder to RabbitMQ (which listens on loopback
only) listen on a `Hub` address, 10.201.0.X/32, kept on a veth pair that never leaves the host
(this kernel has no dummy interfaces); every namespace routes that one address through its own
veth, so cutting a host's link (`link_down`) is a partition of that host only. Nothing gets a
default route: traffic stays on loopback and on the veths made here.

Every process of a host runs in a private mount namespace where one directory (the parent of the
API's data directory) is hidden under an empty tmpfs, so a remote worker cannot read the API's
database or files even by mistake. `check_isolation` proves it; `sees` asks a live process.
The tests need root (`ip netns`, `mount`); there is no skipping.

Several test processes build hosts at once (pytest-xdist workers, another run of the suite): an
address is chosen and added under `address_lock`, so two of them never take the same one.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e_support import ROOT
from tests.tcp_proxy import TcpProxy

DRAMATIQ = str(Path(sys.executable).parent / "dramatiq")
# A constant script: the hidden directory and the command come in as arguments, never as code.
HIDE_THEN_EXEC = 'mount -t tmpfs -o size=1m,mode=0755 sweeplab-hidden "$1" && shift && exec "$@"'
SUBNET = re.compile(r"\b10\.201\.(\d{1,3})\.\d{1,3}/")
ADDRESS_LOCK = Path(tempfile.gettempdir()) / "sweeplab-test-addresses.lock"


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def used_subnets() -> set[int]:
    """The N of every 10.201.N.x address on this host already."""
    return {int(n) for n in SUBNET.findall(ip("-o", "-4", "addr", "show"))}


@contextmanager
def address_lock() -> Iterator[None]:
    """Held from looking for a free address to adding it: without it, two test processes that
    both look before either adds would take the same subnet, and route each other's traffic."""
    with open(ADDRESS_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def free_subnet() -> int:
    free = sorted(set(range(1, 255)) - used_subnets())
    if not free:
        raise RuntimeError("no free 10.201.N.0/24 subnet left")
    return random.choice(free)


def free_port_on(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def short_id() -> str:
    return uuid.uuid4().hex[:8]


class Hub:
    """A local address (10.201.0.X/32) on a veth pair of its own, for the namespaces to reach."""

    def __init__(self) -> None:
        self.link = f"swl{short_id()}a"
        self.address = ""  # chosen when entered, under address_lock

    def __enter__(self) -> Hub:
        ip("link", "add", self.link, "type", "veth", "peer", "name", self.link[:-1] + "b")
        with address_lock():
            taken = {int(a) for a in re.findall(r"\b10\.201\.0\.(\d{1,3})/",
                                                  ip("-o", "-4", "addr", "show"))}
            self.address = f"10.201.0.{random.choice(sorted(set(range(1, 255)) - taken))}"
            ip("addr", "add", f"{self.address}/32", "dev", self.link)
        for link in (self.link, self.link[:-1] + "b"):
            ip("link", "set", link, "up")
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "link", "del", self.link], capture_output=True, timeout=30)


class BoundTcpProxy(TcpProxy):
    """tests.tcp_proxy.TcpProxy listening on a chosen address instead of 127.0.0.1."""

    def __init__(self, target_port: int, bind_host: str, target_host: str = "127.0.0.1") -> None:
        super().__init__(target_port, target_host)
        self.bind_host = bind_host
        self.port = free_port_on(bind_host)

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.bind_host, self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()


class RemoteHost:
    """A network namespace standing in for a training host, with its own data directory."""

    def __init__(self, name: str, hub: Hub, hidden: Path, home: Path) -> None:
        uid = short_id()
        self.name = name
        self.namespace = f"swl-{uid}"
        self.host_link, self.inner_link = f"swl{uid}h", f"swl{uid}n"
        self.host_address = self.address = ""  # chosen when entered, under address_lock
        self.hub = hub
        self.hidden = hidden
        self.data_dir = home / "data"
        self.log_path = home / "worker.log"
        self.workers: list[subprocess.Popen[bytes]] = []
        self.seen_pids: set[int] = set()
        home.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> RemoteHost:
        ip("netns", "add", self.namespace)
        try:
            self._wire()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wire(self) -> None:
        ns = self.namespace
        ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.inner_link)
        ip("link", "set", self.inner_link, "netns", ns)
        with address_lock():
            subnet = free_subnet()
            self.host_address, self.address = f"10.201.{subnet}.1", f"10.201.{subnet}.2"
            ip("addr", "add", f"{self.host_address}/24", "dev", self.host_link)
        ip("link", "set", self.host_link, "up")
        ip("-n", ns, "addr", "add", f"{self.address}/24", "dev", self.inner_link)
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "set", self.inner_link, "up")
        ip("-n", ns, "route", "add", f"{self.hub.address}/32", "via", self.host_address)

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace, with the hidden directory under an empty tmpfs."""
        return ["ip", "netns", "exec", self.namespace,
                "unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", HIDE_THEN_EXEC, "sh", str(self.hidden), *argv]

    def run(self, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.wrap(argv), capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT)

    def start_worker(self, env: dict[str, str], threads: int) -> subprocess.Popen[bytes]:
        """`dramatiq actors --queues sweeplab_train` on this host, logging to `log_path`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [DRAMATIQ, "actors", "--queues", "sweeplab_train", "--processes", "1",
                "--threads", str(threads)]
        with open(self.log_path, "ab") as log:
            worker = subprocess.Popen(self.wrap(argv), cwd=ROOT, env=env, stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.workers.append(worker)
        return worker

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the worker process says it is ready; remembers the host's pids."""
        deadline = time.monotonic() + timeout
        while "Worker process is ready for action." not in self.log():
            if time.monotonic() > deadline or any(w.poll() is not None for w in self.workers):
                raise AssertionError(f"{self.name}: worker not ready\n{self.log()}")
            time.sleep(0.2)
        self.pids()

    def log(self, tail: int = 20000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-tail:]

    def pids(self) -> list[int]:
        """Every live process in the namespace (and remember them: runs name their pid)."""
        found = [int(pid) for pid in ip("netns", "pids", self.namespace).split()]
        self.seen_pids.update(found)
        return found

    def script_pids(self) -> list[int]:
        """Live training scripts of this host (they carry SWEEPLAB_RUN_ID)."""
        return [pid for pid in self.pids() if is_script(pid)]

    def link_down(self) -> None:
        ip("link", "set", self.host_link, "down")

    def link_up(self, timeout: float = 10) -> None:
        """Restore the link, and forget the neighbours that failed while it was down."""
        ip("link", "set", self.host_link, "up")
        deadline = time.monotonic() + timeout
        while "LOWER_UP" not in ip("-n", self.namespace, "link", "show", self.inner_link):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: link not back up after {timeout} s")
            time.sleep(0.05)
        ip("-n", self.namespace, "neigh", "flush", "dev", self.inner_link)
        ip("neigh", "flush", "dev", self.host_link)

    def kill_all(self, timeout: float = 10) -> None:
        """kill -9 every process in the namespace, until none is left."""
        deadline = time.monotonic() + timeout
        while pids := self.pids():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: processes survive kill -9: {pids}")
            time.sleep(0.1)
        for worker in self.workers:
            worker.wait(timeout=10)

    def close(self) -> None:
        """Kill everything, then remove the veth pair and the namespace."""
        try:
            self.kill_all()
        except (RuntimeError, AssertionError):
            pass  # the namespace may be half made; remove what there is regardless
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=30)

    def check_isolation(self, api_data_dir: Path) -> None:
        """A command run the way the worker is run sees an empty tmpfs, not the API's files."""
        assert api_data_dir.is_relative_to(self.hidden) and (api_data_dir / "sweeplab.db").exists()
        kind = self.run(["stat", "-f", "-c", "%T", str(self.hidden)])
        listing = self.run(["ls", "-A", str(self.hidden)])
        probe = self.run(["ls", "-A", str(api_data_dir)])
        assert (kind.returncode, kind.stdout.strip()) == (0, "tmpfs"), kind
        assert (listing.returncode, listing.stdout) == (0, ""), listing
        assert probe.returncode != 0 and "No such file" in probe.stderr, probe
        assert (api_data_dir / "sweeplab.db").exists(), "the tmpfs leaked out to the host"


def sees(pid: int, path: Path) -> bool:
    """Whether process `pid` can see `path` (resolved in that process's mount namespace)."""
    return os.path.lexists(f"/proc/{pid}/root{path}")


def is_script(pid: int) -> bool:
    """A training script (its environment carries SWEEPLAB_RUN_ID), not one of the bwrap
    processes of the sandbox around it (they carry it too)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        sandbox = Path(f"/proc/{pid}/comm").read_text().strip() == "bwrap"
    except OSError:
        return False
    return (state != "Z" and not sandbox
            and any(item.startswith(b"SWEEPLAB_RUN_ID=") for item in environ))


def worker_pid(worker: str) -> int:
    """The pid in a run's `worker` ("host:pid")."""
    return int(worker.rsplit(":", 1)[1])
