"""Running a user's script as a supervised child process.

Dramatiq's own time limit cannot stop a child process, so we do it: the child gets its own
process group (so a script's own children go with it), a parent-death signal (so it dies if the
worker is killed), a time limit, and a stop check polled while it runs (cancel, lost lease).
Arguments are passed as a list: no shell ever sees a value.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.execution.sandbox import Launch, ScriptView, launch_command

GRACE_S = 3.0
RUN_MARKER = "SWEEPLAB_RUN_ID"


@dataclass(frozen=True)
class ChildResult:
    exit_code: int | None
    timed_out: bool
    stopped: bool
    duration_s: float
    limit_reached: str | None = None  # "task limit of N reached", from the script's cgroup
    memory_mb: int = 0  # its memory limit (0: none), for telling why it failed
    tasks: int = 0  # its task limit (0: none), the same

    @property
    def signal_name(self) -> str | None:
        if self.exit_code is None or self.exit_code >= 0:
            return None
        try:
            return signal.Signals(-self.exit_code).name
        except ValueError:
            return f"signal {-self.exit_code}"


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole group, then SIGKILL whatever is left after a grace period."""
    kill_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    kill_group(process.pid, signal.SIGKILL)
    process.wait()


class _ExitWatch:
    """Wakes the moment the child exits. Popen.wait(timeout) polls with sleeps of up to 50 ms,
    which every run of a sweep would pay; a pidfd (Linux 5.3+) costs nothing."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        try:
            self.fd: int | None = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            self.fd = None

    def wait(self, timeout: float) -> bool:
        """True once the child has exited (and been reaped)."""
        if self.fd is None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        select.select([self.fd], [], [], timeout)
        return self.process.poll() is not None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class Child:
    process: subprocess.Popen[bytes]
    launch: Launch

    @property
    def pid(self) -> int:
        return self.process.pid


def start_child(argv: Sequence[str], view: ScriptView, cwd: Path, env: Mapping[str, str],
                stdout: Path, stderr: Path) -> Child:
    launch = launch_command(argv, view)
    try:
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            return Child(launch.popen(
                cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True), launch)
    except BaseException:
        launch.ended()
        raise


def supervise(child: Child, timeout_s: float, should_stop: Callable[[], bool],
              poll_s: float = 1.0) -> ChildResult:
    """Wait for the child; kill its group on timeout or when `should_stop()` says so."""
    process = child.process
    started = time.monotonic()
    deadline = started + timeout_s
    timed_out = stopped = False
    exit_watch = _ExitWatch(process)
    try:
        while True:
            if exit_watch.wait(max(0.0, min(poll_s, deadline - time.monotonic()))):
                break
            timed_out = time.monotonic() >= deadline
            stopped = not timed_out and should_stop()
            if timed_out or stopped:
                _terminate(process)
                break
    except BaseException:  # the worker is shutting down (or our own code failed): no orphans
        _terminate(process)
        child.launch.ended()
        raise
    finally:
        exit_watch.close()
    kill_group(process.pid)  # a script's background children do not outlive it
    limit = child.launch.ended()  # nor do those in its sandbox or cgroup
    view = child.launch.view
    return ChildResult(process.returncode, timed_out, stopped, time.monotonic() - started,
                       limit, view.memory_mb if view else 0, view.tasks if view else 0)


def kill_leftovers(pgid: int, run_id: int, run_dir: Path) -> int:
    """Kill the processes of an earlier attempt's group, if they are still there.

    Checked by the run marker in their environment and by their working directory (this
    worker's run folder), so neither a recycled group id nor another data directory's script
    of the same run is ever hit.
    """
    marker = f"{RUN_MARKER}={run_id}".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            group = int(stat.rsplit(")", 1)[1].split()[2])
            if group != pgid or marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if Path(os.readlink(entry / "cwd")) != run_dir.resolve():
                continue
            os.kill(int(entry.name), signal.SIGKILL)
            killed += 1
        except (OSError, ValueError, IndexError):
            continue
    return killed


def this_worker() -> str:
    """This process as runs and the registry name their worker: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"
