"""What a script sees: bubblewrap (`bwrap`) around every script sweeplab starts.

A script runs in a new mount namespace holding only what its `ScriptView` lists, bound at the
same absolute paths (so its argv is unchanged): the system's directories, the interpreter, its
script files and inputs read-only, its run folder writable, a private /tmp. It gets its own
user, PID, IPC and UTS namespaces (it sees no other process, so it can neither signal nor trace
the worker or the API) and, with the network off, its own empty network namespace. Its memory
is capped by RLIMIT_AS and its tasks by RLIMIT_NPROC inside its user namespace, or a pids cgroup
where that does not bind (service/execution/cgroups.py).

Stdlib only: a remote worker imports it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.execution import cgroups

BWRAP = shutil.which("bwrap")
SETPRIV = shutil.which("setpriv")
PRLIMIT = shutil.which("prlimit")  # util-linux, like setpriv; under /usr, so seen in the sandbox
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child must not import
# Bound read-only when they exist; a merged-/usr link (/bin -> usr/bin) is recreated as a link.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The few /etc files a script needs: name resolution, TLS roots, users (for getpwuid), the
# time zone and the dynamic loader's cache (without it /usr/lib/<triplet> is not searched).
# Never /etc/sweeplab, which holds the tokens.
ETC_FILES = ("resolv.conf", "hosts", "host.conf", "gai.conf", "nsswitch.conf", "ssl",
             "ca-certificates", "passwd", "group", "localtime", "ld.so.cache", "ld.so.conf",
             "ld.so.conf.d", "alternatives")
log = logging.getLogger("sweeplab.sandbox")


class SandboxUnavailable(RuntimeError):
    """The sandbox is required (SWEEPLAB_SANDBOX=on, or SWEEPLAB_SCRIPT_NETWORK=off), but
    bubblewrap is missing or cannot make its namespaces here."""


@dataclass(frozen=True)
class ScriptView:
    """What one script may reach. Paths are absolute; missing ones are skipped."""

    workdir: Path  # its working directory (its run folder, or the best run's for predictions)
    read_only: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    devices: tuple[Path, ...] = ()  # device nodes beyond the basic /dev (its GPUs)
    network: bool = True
    memory_mb: int = 0  # 0: no limit
    tasks: int = 0  # processes and threads at once; 0: no limit
    sandbox: bool = True  # False: started as before the sandbox (SWEEPLAB_SANDBOX=off)


def _runs(extra: list[str]) -> bool:
    probe = [BWRAP or "bwrap", *system_args(), "--unshare-pid", "--unshare-ipc", "--dev", "/dev",
             *extra, "--", "/bin/true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.cache
def _abilities() -> tuple[bool, bool]:
    """(bubblewrap works here, it may mount a /proc of the script's own). Tried once per
    process: user namespaces may be off, a unit's RestrictNamespaces= may forbid them, and the
    kernel refuses a new /proc where the service's is partly covered (systemd's
    ProtectKernelTunables= and ProtectKernelLogs= cover parts of it)."""
    if not BWRAP:
        return False, False
    if _runs(["--proc", "/proc"]):
        return True, True
    return _runs(["--tmpfs", "/proc"]), False


def bwrap_works() -> bool:
    return _abilities()[0]


def proc_args() -> list[str]:
    """The script's own /proc (its PID namespace's processes only); where the kernel refuses
    one, an empty /proc: Python, NumPy and scikit-learn run without it, never the host's."""
    return ["--proc", "/proc"] if _abilities()[1] else ["--tmpfs", "/proc"]


def sandbox_in_use(mode: str) -> bool:
    """Whether scripts are started in the sandbox under SWEEPLAB_SANDBOX=`mode`."""
    return mode != "off" and bwrap_works()


def check_sandbox(mode: str, network: bool = True) -> None:
    """At start: refuse to run without the sandbox when it is `on` (or when the network is to
    be taken away, which only the sandbox can do); say so once when `auto` finds none."""
    if sandbox_in_use(mode):
        if not _abilities()[1]:
            log.warning("scripts run in the sandbox with an empty /proc: the kernel refuses "
                        "them one of their own here")
        return
    why = ("SWEEPLAB_SANDBOX=off" if mode == "off" else
           "bubblewrap (bwrap) is not installed" if not BWRAP else
           f"{BWRAP} cannot create its namespaces here (unprivileged user namespaces off, or "
           "the unit's RestrictNamespaces=)")
    if mode == "on" or not network:
        wanted = "SWEEPLAB_SANDBOX=on" if mode == "on" else "SWEEPLAB_SCRIPT_NETWORK=off"
        raise SandboxUnavailable(f"{wanted} needs the sandbox, but {why}: install bubblewrap "
                                 "(apt-get install bubblewrap)")
    if mode == "off":
        return
    log.warning("scripts run without a sandbox: %s (SWEEPLAB_SANDBOX=auto)", why)


def system_args() -> list[str]:
    """The system's directories, read-only; links (merged /usr) as links."""
    args: list[str] = []
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def bwrap_argv(argv: Sequence[str], view: ScriptView) -> list[str]:
    """The bubblewrap command line that runs `argv` seeing only `view`."""
    # The private /tmp first: a data directory under /tmp is bound over it, not hidden by it
    args = [BWRAP or "bwrap", *system_args(), *proc_args(), "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in view.read_only:
        args += ["--ro-bind-try", str(path), str(path)]
    for path in view.writable:
        args += ["--bind-try", str(path), str(path)]
    for device in view.devices:
        args += ["--dev-bind-try", str(device), str(device)]
    # --unshare-user even where bwrap runs as root: RLIMIT_NPROC then counts the sandbox's
    # processes only (and the script holds no capability outside it). No UTS or cgroup
    # namespace: a script cannot set the host's name nor move between cgroups without them
    # either, and each namespace the units allow raises their exposure (README)
    args += ["--unshare-user", "--unshare-pid", "--unshare-ipc"]
    if not view.network:
        args.append("--unshare-net")
    # --new-session: no TIOCSTI into a terminal; --die-with-parent: gone with its supervisor
    args += ["--die-with-parent", "--new-session", "--chdir", str(view.workdir), "--", *argv]
    return args


@dataclass
class Launch:
    """How to start one script, and its clean-up once it has ended."""

    command: list[str]
    preexec: Callable[[], None] | None  # run between fork and exec; joins the cgroup if any
    cgroup: cgroups.RunGroup | None = None
    view: ScriptView | None = field(default=None, repr=False)
    preexec_joined: Callable[[], None] | None = None  # the same, less joining the cgroup

    def popen(self, **options: Any) -> subprocess.Popen[bytes]:
        """Start it. Where this thread may step into the cgroup (v1), it does so around the
        start: nothing then runs between fork and exec, and Python vforks. Not for an event
        loop's coroutines, which would take the loop's thread into the group across awaits:
        they pass `preexec` to asyncio's start."""
        group = self.cgroup
        if group is not None and group.home is not None:
            with group.joined_by_this_thread():
                return subprocess.Popen(self.command, preexec_fn=self.preexec_joined, **options)
        return subprocess.Popen(self.command, preexec_fn=self.preexec, **options)

    def ended(self) -> str | None:
        """Kill whatever is left of the script, free its cgroup; the limit it hit, if any."""
        group, self.cgroup = self.cgroup, None  # once: a second call finds nothing to do
        if group is None:
            return None
        return f"task limit of {group.limit} reached" if group.close() else None


def limits_argv(memory_mb: int, nproc: int) -> list[str]:
    """util-linux's prlimit, which sets the limits and execs the script (no Python between
    fork and exec); empty without limits."""
    wanted = [f"--as={memory_mb << 20}"] * bool(memory_mb) + [f"--nproc={nproc}"] * bool(nproc)
    return [PRLIMIT, *wanted, "--"] if wanted and PRLIMIT else []


def launch_command(argv: Sequence[str], view: ScriptView | None) -> Launch:
    """The command, and the function run between fork and exec if one is needed, that start
    `argv` as `view` allows.

    The child always gets SIGKILL when its parent dies (bwrap's --die-with-parent, else
    setpriv's). In the sandbox the task limit is RLIMIT_NPROC set inside the script's own user
    namespace, where it counts the script's processes only; root is exempt from RLIMIT_NPROC,
    so under root the script is started in a pids cgroup instead (see cgroups). Outside the
    sandbox a cgroup where one may be written, else RLIMIT_NPROC over all of the user's threads
    (cgroups.nproc_limit).
    """
    if view is None:
        return _outside(list(argv), None, None)
    root = os.geteuid() == 0
    in_cgroup = view.tasks > 0 and (root or not view.sandbox)
    group = cgroups.new_run_group(view.tasks) if in_cgroup else None
    if not view.sandbox:
        nproc = cgroups.nproc_limit(view.tasks) if view.tasks and group is None else 0
        return _outside([*limits_argv(view.memory_mb, nproc), *argv], group, view)
    nproc = view.tasks if view.tasks and not root else 0
    if PRLIMIT is None and (view.memory_mb or nproc):  # set before the namespaces: coarser
        return _launch(bwrap_argv(argv, view), group, view, view.memory_mb,
                       cgroups.nproc_limit(view.tasks) if nproc else 0)
    return _launch(bwrap_argv([*limits_argv(view.memory_mb, nproc), *argv], view), group, view)


def _outside(command: list[str], group: cgroups.RunGroup | None,
             view: ScriptView | None) -> Launch:
    """Without the sandbox: setpriv's death signal, else ours (between fork and exec)."""
    memory = view.memory_mb if view is not None and not PRLIMIT else 0
    if SETPRIV:
        return _launch([SETPRIV, "--pdeathsig", "KILL", "--", *command], group, view, memory)
    return _launch(command, group, view, memory, death_signal=True)


def _launch(command: list[str], group: cgroups.RunGroup | None, view: ScriptView | None,
            memory_mb: int = 0, nproc: int = 0, death_signal: bool = False) -> Launch:
    """`command`, with what must still be done between fork and exec: with and without
    joining the group."""
    def preexec(procs: str | None) -> Callable[[], None] | None:
        if not (memory_mb or procs or nproc or death_signal):
            return None  # nothing: Python may vfork
        return functools.partial(_before_exec, memory_mb << 20, procs, nproc, death_signal)

    return Launch(command, preexec(group.procs_file if group else None), group, view,
                  preexec_joined=preexec(None))


def _before_exec(memory_bytes: int, cgroup_procs: str | None, nproc: int,
                 death_signal: bool) -> None:
    # Runs in the forked child before exec: only a few syscalls.
    if death_signal:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if cgroup_procs is not None:
        cgroups.write_control(cgroup_procs, "0")  # "0": this process, before it can fork
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
