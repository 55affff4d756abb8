"""A pids cgroup per script, where RLIMIT_NPROC cannot limit it: a script started by root
(exempt from RLIMIT_NPROC), or one outside the sandbox (where RLIMIT_NPROC counts all the
user's threads, not one run's). A pids cgroup counts exactly the script's processes and
threads. We use the first we may write:
- cgroup v1's pids hierarchy, below this process's own group (`/sys/fs/cgroup/pids/...`);
- cgroup v2, below this process's own group when systemd delegated it (`Delegate=yes`): this
  process first moves into a leaf of its own (`service`), since v2 lets a group with processes
  in it give its children no controller.
None writable (systemd's ProtectControlGroups=yes makes them read-only): `new_run_group`
answers None and the caller falls back to RLIMIT_NPROC, set by `nproc_limit`.

How a script gets into its group: in v1 each thread has a group of its own, so the thread that
starts the script steps into the group, starts it (the child is born there) and steps back
(`joined_by_this_thread`). Moving one's own thread takes none of the kernel's locks that moving
a process does, and the start needs nothing run between fork and exec, so Python can vfork:
forking the whole worker, and the copy-on-write faults after it, cost a sweep's run about 20 ms.
v2 moves whole processes only: the child joins between fork and exec (`procs_file`).

Stdlib only: a remote worker imports it.
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
EMPTY_WAIT_S = 2.0
_names = itertools.count()
# This process's groups from their making to their closing: a sweep for stale ones must not
# remove another thread's group that is still empty because its script is about to start.
_live: set[str] = set()
_live_lock = threading.Lock()


def _own_path(controller: str) -> str | None:
    """This process's group in the hierarchy of `controller` ("" for v2), from /proc."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return None


def _v1_base() -> Path | None:
    path = _own_path("pids")
    if path is None or not (ROOT / "pids").is_dir():
        return None
    base = ROOT / "pids" / path.lstrip("/")
    return base if os.access(base, os.W_OK) else None


def _v2_base() -> Path | None:
    path = _own_path("")
    if path is None or not (ROOT / "cgroup.controllers").is_file():
        return None
    base = ROOT / path.lstrip("/")
    try:
        if "pids" not in (base / "cgroup.controllers").read_text().split():
            return None
        if "pids" not in (base / "cgroup.subtree_control").read_text().split():
            leaf = base / "service"
            leaf.mkdir(exist_ok=True)
            for pid in (base / "cgroup.procs").read_text().split():
                (leaf / "cgroup.procs").write_text(pid)
            (base / "cgroup.subtree_control").write_text("+pids")
    except OSError:
        return None
    return base


@functools.cache
def run_groups_base() -> Path | None:
    """Where this process makes its runs' groups; None when it may not."""
    return _v1_base() or _v2_base()


def write_control(path: str | Path, text: str) -> None:
    """One write to a cgroup control file. A few syscalls, no buffering: also what a forked
    child runs between fork and exec (sandbox._before_exec)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class RunGroup:
    """One script's pids group: made before it starts, emptied and removed after it ends."""

    def __init__(self, path: Path, limit: int, home: Path | None = None) -> None:
        self.path = path
        self.limit = limit
        self.procs_file = str(path / "cgroup.procs")
        self.home = home  # v1: the group a thread steps back to; None: v2, no thread steps

    @contextmanager
    def joined_by_this_thread(self) -> Iterator[None]:
        """This thread in the group while the block runs: what it starts is born there. One
        task more than the script's limit is allowed meanwhile, this thread's."""
        assert self.home is not None, "only cgroup v1 puts threads in groups of their own"
        write_control(self.path / "pids.max", str(self.limit + 1))
        write_control(self.path / "tasks", "0")  # "0": the writing thread alone
        try:
            yield
        finally:
            write_control(self.home / "tasks", "0")
            write_control(self.path / "pids.max", str(self.limit))

    def limit_hit(self) -> bool:
        """Whether a fork or a thread was refused at the limit."""
        try:
            events = (self.path / "pids.events").read_text().split()
        except OSError:
            return False
        return len(events) >= 2 and events[0] == "max" and events[1] != "0"

    def close(self) -> bool:
        """Kill what is still in it (nothing outlives its run), remove it; whether the limit
        was hit."""
        try:
            return self._kill_and_remove()
        finally:
            with _live_lock:
                _live.discard(self.path.name)

    def _kill_and_remove(self) -> bool:
        hit = self.limit_hit()
        deadline = time.monotonic() + EMPTY_WAIT_S
        # The sandbox's own init is usually still exiting when its script's end is seen, for
        # a fraction of a millisecond: short looks first (a sweep's run paid 2 ms here).
        pause = 0.0001
        while True:
            try:
                pids = (self.path / "cgroup.procs").read_text().split()
            except OSError:
                return hit
            if not pids or time.monotonic() > deadline:
                break
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        try:
            self.path.rmdir()
        except OSError:
            pass  # still busy: a later start's sweep removes it
        return hit


def _sweep(base: Path) -> None:
    """Remove this process's groups left by runs whose processes were slow to go."""
    for stale in base.glob(f"sweeplab-{os.getpid()}-*"):
        with _live_lock:
            if stale.name in _live:
                continue
        try:
            stale.rmdir()
        except OSError:
            pass


def new_run_group(limit: int) -> RunGroup | None:
    """A fresh group allowing `limit` tasks, or None when no cgroup may be written here."""
    base = run_groups_base()
    if base is None:
        return None
    number = next(_names)
    path = base / f"sweeplab-{os.getpid()}-{number}"
    with _live_lock:
        _live.add(path.name)
    try:
        if number % 64 == 0:
            _sweep(base)
        path.mkdir()
        (path / "pids.max").write_text(str(limit))
    except OSError:
        with _live_lock:
            _live.discard(path.name)
        return None
    v1 = ROOT / "pids" in (base, *base.parents)
    return RunGroup(path, limit, home=base if v1 else None)


def _user_tasks(uid: int) -> int:
    """Threads of every process of `uid` this process can see (RLIMIT_NPROC counts them all)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            count += int(fields.get("Threads", "1").strip() or 1)
    return count


def nproc_limit(tasks: int) -> int:
    """RLIMIT_NPROC for a script allowed `tasks` more, where no cgroup may be written; 0 when it
    would not bind (root is exempt from it). RLIMIT_NPROC counts all of the user's threads, the
    API's and the workers' too, so the script may have `tasks` beyond what they have now."""
    uid = os.geteuid()
    return 0 if uid == 0 else _user_tasks(uid) + tasks
