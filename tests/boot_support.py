"""Booted Debian 12 machines for the deployment test (tests/test_boot.py).

`scripts/build_boot_image.sh` builds, once, a Debian 12 root file system with every OS package
`provision.sh` needs and a wheelhouse of requirements.txt, cached under `CACHE`. Each test run
copies the root file system, drops a copy of the project into it, and boots it with
`systemd-nspawn --boot --register=no` in a network namespace made here (`Network`: two
namespaces joined by one veth pair, 10.202.N.1 and .2, no route anywhere else). Commands run
inside through `nsenter` into the machine's init. Each machine's nspawn runs in a cgroup of its
own (`swlb-<name>`), so two machines never share unit cgroups, and the memory of a unit is read
from the host as the resident memory of the processes in that cgroup.

Nothing here touches the host's RabbitMQ, PostgreSQL or services: the machines have their own.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e_support import ROOT

CACHE = Path(os.environ.get("SWEEPLAB_BOOT_CACHE", "/var/cache/sweeplab-test"))
TOOLS = ("systemd-nspawn", "debootstrap", "nsenter", "ip", "git")
INSTALL = "apt-get install -y systemd-container debootstrap"
# nspawn --keep-unit puts the machine's cgroups under its own, in the v2 tree and, on a v1 + v2
# hybrid host like this one, in the name=systemd tree too.
CGROUP_TREES = (("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd")
                if Path("/sys/fs/cgroup/unified").is_dir() else ("/sys/fs/cgroup",))
INNER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
PROJECT_DIR = "/root/sweeplab"  # where the copy of the project lands inside a machine
WHEELHOUSE = "/var/cache/sweeplab-wheels"  # the host's wheelhouse, bound read-only


def require_tools() -> None:
    """Fail in CI, skip elsewhere, when the machine lacks root or a tool the test needs."""
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    problem = (f"the boot test needs {', '.join(missing)}: {INSTALL}" if missing else
               "the boot test needs root (debootstrap, systemd-nspawn)" if os.geteuid() else "")
    if problem and os.environ.get("CI"):
        pytest.fail(problem)
    if problem:
        pytest.skip(problem)


def build_image() -> tuple[Path, Path]:
    """(rootfs, wheelhouse), built into CACHE by scripts/build_boot_image.sh when missing."""
    started = time.monotonic()
    done = subprocess.run([str(ROOT / "scripts" / "build_boot_image.sh"), str(CACHE)],
                          capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if done.returncode != 0:
        pytest.fail(f"scripts/build_boot_image.sh failed:\n{done.stderr[-4000:]}")
    rootfs, wheels = done.stdout.split()[-2:]
    print(f"boot image ready in {time.monotonic() - started:.0f} s: {rootfs}, {wheels}")
    return Path(rootfs), Path(wheels)


def copy_rootfs(rootfs: Path, dest: Path) -> None:
    subprocess.run(["cp", "-a", "--reflink=auto", str(rootfs), str(dest)], check=True,
                   timeout=600)


def copy_project(root: Path) -> None:
    """The project's files as a clone has them (tracked, plus new files not ignored) under
    PROJECT_DIR in the machine's root `root`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True, cwd=ROOT, timeout=60).stdout
    dest = root / PROJECT_DIR.lstrip("/")
    for name in sorted(set(listed.decode().split("\0")) - {""}):
        source = ROOT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree, not yet in the index
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest / name, follow_symlinks=False)


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


class Network:
    """Two network namespaces joined by a veth pair: `addresses[0]` in `names[0]`, and so on."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        subnet = random.randint(1, 254)
        self.names = (f"swlb-{tag}-a", f"swlb-{tag}-b")
        self.links = (f"swlb{tag}a", f"swlb{tag}b")
        self.addresses = (f"10.202.{subnet}.1", f"10.202.{subnet}.2")

    def __enter__(self) -> Network:
        try:
            for name in self.names:
                ip("netns", "add", name)
                ip("-n", name, "link", "set", "lo", "up")
            ip("link", "add", self.links[0], "type", "veth", "peer", "name", self.links[1])
            for name, link, address in zip(self.names, self.links, self.addresses, strict=True):
                ip("link", "set", link, "netns", name)
                ip("-n", name, "addr", "add", f"{address}/24", "dev", link)
                ip("-n", name, "link", "set", link, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for name in self.names:  # a namespace takes its end of the veth pair with it
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.links[0]], capture_output=True, timeout=30)


class Machine:
    """A Debian 12 copy in `root`, booted with systemd-nspawn in the network namespace `netns`."""

    def __init__(self, name: str, root: Path, netns: str, wheels: Path, log: Path) -> None:
        self.name, self.root, self.netns, self.wheels = name, root, netns, wheels
        self.log_path = log
        self.cgroup = f"swlb-{name}"
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.provision_output = ""

    # -- life cycle -------------------------------------------------------------------------
    def boot(self, timeout: float = 180) -> float:
        """Boot and wait until systemd is up; returns the seconds it took."""
        started = time.monotonic()
        for tree in CGROUP_TREES:
            Path(f"{tree}/{self.cgroup}").mkdir(exist_ok=True)
        join = " && ".join(f"echo $$ > {t}/{self.cgroup}/cgroup.procs"
                           for t in CGROUP_TREES)
        argv = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--quiet",
                f"--machine={self.name}", f"--directory={self.root}",
                f"--network-namespace-path=/run/netns/{self.netns}",
                # root on a real host may set its firewall (provision.sh's nftables rule):
                # nspawn grants that only with a network of its own making
                "--capability=CAP_NET_ADMIN",
                f"--bind-ro={self.wheels}:{WHEELHOUSE}", "--console=pipe"]
        with open(self.log_path, "ab") as log:
            self.nspawn = subprocess.Popen(["sh", "-c", f'{join} && exec "$@"', "sh", *argv],
                                           stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        self.leader = self._find_leader(started + 60)
        state = self.wait_running(max(10.0, timeout - (time.monotonic() - started)))
        print(f"{self.name}: booted in {time.monotonic() - started:.1f} s ({state})")
        return time.monotonic() - started

    def _find_leader(self, deadline: float) -> int:
        """The machine's init: the nspawn process's child that is pid 1 in its own namespace."""
        assert self.nspawn is not None
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise AssertionError(f"{self.name}: systemd-nspawn exited {self.nspawn.returncode}"
                                     f"\n{self.console()}")
            for pid in children(self.nspawn.pid):
                if ns_pid(pid) == 1:
                    return pid
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: no init in the machine\n{self.console()}")

    def wait_running(self, timeout: float = 180) -> str:
        """`systemctl is-system-running --wait`: running, or degraded with the failed units
        printed; anything else fails."""
        deadline = time.monotonic() + timeout
        while True:  # "offline" until systemd's own socket exists, early in the boot
            done = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                            timeout=max(1.0, deadline - time.monotonic()))
            state = done.stdout.strip()
            if state not in ("offline", "") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if state == "degraded":
            failed = self.sh("systemctl --failed --no-legend", check=False)
            print(f"{self.name}: degraded; failed units:\n{failed}")
        elif state != "running":
            raise AssertionError(f"{self.name}: system is {state!r}\n{self.console()}")
        return state

    def poweroff(self, timeout: float = 120) -> float:
        """`systemctl poweroff` inside, until systemd-nspawn exits; returns the seconds."""
        assert self.nspawn is not None
        started = time.monotonic()
        self.run(["systemctl", "poweroff"], check=False, timeout=30)
        try:
            code = self.nspawn.wait(timeout=timeout)
        except subprocess.TimeoutExpired as expired:
            raise AssertionError(f"{self.name}: still up {timeout} s after poweroff") from expired
        self._forget()
        assert code == 0, f"{self.name}: systemd-nspawn exited {code}\n{self.console()}"
        return time.monotonic() - started

    def close(self) -> None:
        """Stop the machine whatever its state: SIGTERM (nspawn powers it off), then SIGKILL."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.terminate()
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.nspawn.pid, signal.SIGKILL)
                if self.leader:
                    kill_quietly(self.leader)
                self.nspawn.wait(timeout=30)
        self._forget()

    def _forget(self) -> None:
        self.leader = 0
        for tree in CGROUP_TREES:
            remove_cgroup(Path(f"{tree}/{self.cgroup}"))

    def console(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    # -- inside ------------------------------------------------------------------------------
    def run(self, argv: list[str], timeout: float = 120, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`argv` inside the machine as root, with a clean environment."""
        assert self.leader, f"{self.name} is not running"
        inner_env = [f"{k}={v}" for k, v in {**INNER_ENV, **(env or {})}.items()]
        command = ["nsenter", f"--target={self.leader}", "--mount", "--uts", "--ipc", "--net",
                   "--pid", "--", "env", "-i", *inner_env, *argv]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd="/")
        if check and done.returncode != 0:
            raise AssertionError(f"{self.name}: {shlex.join(argv)} exited {done.returncode}\n"
                                 f"--- stdout\n{done.stdout[-6000:]}\n--- stderr\n"
                                 f"{done.stderr[-6000:]}")
        return done

    def sh(self, script: str, timeout: float = 120, check: bool = True, **env: str) -> str:
        return self.run(["sh", "-c", script], timeout=timeout, check=check, env=env).stdout

    def is_active(self, unit: str) -> str:
        return self.run(["systemctl", "is-active", unit], check=False).stdout.strip()

    def read(self, path: str) -> str:
        """A file of the machine, read from the host through its root directory."""
        return (self.root / path.lstrip("/")).read_text()

    def unit_memory_kib(self, units: tuple[str, ...]) -> dict[str, tuple[int, int]]:
        """(resident, proportional) memory in KiB of every process in each unit's cgroup, read
        from the host. Resident counts pages shared between processes (forked workers, shared
        libraries) once per process; proportional splits them among their sharers."""
        totals = dict.fromkeys(units, (0, 0))
        prefix = f"0::/{self.cgroup}/payload/system.slice/"
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cgroup = (entry / "cgroup").read_text()
                line = next((x for x in cgroup.splitlines() if x.startswith(prefix)), "")
                unit = line[len(prefix):].split("/")[0]
                if unit in totals:
                    rss, pss = totals[unit]
                    totals[unit] = (rss + field_kib(entry / "status", "VmRSS"),
                                    pss + field_kib(entry / "smaps_rollup", "Pss"))
            except (FileNotFoundError, ProcessLookupError):
                continue
        return totals


class Api:
    """The sweeplab API of a machine, called with curl from inside it (JSON in, JSON out)."""

    def __init__(self, machine: Machine, token: str, base: str = "http://127.0.0.1:8080") -> None:
        self.machine, self.token, self.base = machine, token, base

    def call(self, method: str, path: str, body: object = None, expect: int = 200,
             form: dict[str, str] | None = None) -> object:
        argv = ["curl", "-sS", "-X", method, "-w", "\n%{http_code}",
                "-H", f"Authorization: Bearer {self.token}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
        for key, value in (form or {}).items():
            argv += ["-F", f"{key}={value}"]
        done = self.machine.run([*argv, f"{self.base}/api/v1{path}"], timeout=300)
        text, _, status = done.stdout.rpartition("\n")
        assert int(status) == expect, f"{method} {path}: {status}, expected {expect}\n{text}"
        return json.loads(text) if text.strip() else None


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and ppid(int(entry.name)) == pid:
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


def ns_pid(pid: int) -> int:
    """The pid of `pid` in its innermost pid namespace (NSpid's last field)."""
    try:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if x.startswith("NSpid:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0
    return int(line.split()[-1])


def field_kib(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0  # kernel threads and zombies have none


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def remove_cgroup(path: Path) -> None:
    """rmdir a cgroup and its children, deepest first (cgroups go only empty, by rmdir)."""
    if not path.is_dir():
        return
    deadline = time.monotonic() + 30  # processes killed a moment ago take a moment to go
    while any(p.read_text().strip() for p in path.rglob("cgroup.procs")):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for sub in [*sorted((p for p in path.rglob("*") if p.is_dir()),
                        key=lambda p: -len(p.parts)), path]:
        try:
            sub.rmdir()
        except OSError as error:  # a process left in it: say so, leave it
            print(f"could not remove cgroup {sub}: {error}")
