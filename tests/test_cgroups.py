"""A script's pids cgroup under root (where RLIMIT_NPROC does not bind): on cgroup v1 the
starting thread steps into the group around the start, so the script is born in it and Python
needs no fork (nothing runs between fork and exec); the thread steps back out after."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from service.execution import cgroups
from service.execution.sandbox import ScriptView, bwrap_works, launch_command

BASE = cgroups.run_groups_base()
V1 = BASE is not None and cgroups.ROOT / "pids" in (BASE, *BASE.parents)
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not V1 or not bwrap_works(),
                                reason="needs root, a writable cgroup v1 pids hierarchy and "
                                       "bubblewrap")


def pids_group_of(task: str) -> str:
    """The pids group of a process or thread, as /proc/<task>/cgroup names it."""
    lines = Path(f"/proc/{task}/cgroup").read_text().splitlines()
    return next(line.split(":", 2)[2] for line in lines if ":pids:" in line)


def test_a_script_is_born_in_its_group_and_the_thread_steps_back(tmp_path):
    # Given a sandboxed launch with a task limit, started from a thread of its own
    view = ScriptView(workdir=tmp_path, writable=(tmp_path,), tasks=7)
    launch = launch_command(["/bin/sleep", "5"], view)
    assert launch.cgroup is not None and launch.preexec_joined is None  # nothing to fork for
    found: dict[str, str] = {}

    def start() -> None:
        home = pids_group_of("thread-self")
        child = launch.popen(stdin=subprocess.DEVNULL, start_new_session=True)
        found.update(home=home, after=pids_group_of("thread-self"),
                     child=pids_group_of(str(child.pid)), pid=str(child.pid),
                     limit=(launch.cgroup.path / "pids.max").read_text().strip())

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    try:
        # Then the script runs in its group, at the script's limit, and the thread is back home
        group = "/" + str(launch.cgroup.path.relative_to(cgroups.ROOT / "pids"))
        assert found["child"] == group
        assert found["after"] == found["home"] != group
        assert found["limit"] == "7"
        assert (launch.cgroup.path / "cgroup.procs").read_text().split()[0] == found["pid"]
    finally:
        path = launch.cgroup.path
        # And ending it kills what is left and removes the group
        assert launch.ended() is None
        assert not path.exists()


def test_a_sweep_for_stale_groups_spares_those_about_to_be_used():
    # Given a group made for a script that has not started yet, and one left by an earlier run
    assert BASE is not None
    waiting = cgroups.new_run_group(5)
    assert waiting is not None
    stale = BASE / f"sweeplab-{os.getpid()}-stale"
    stale.mkdir()
    try:
        # When another thread, making its own group, sweeps for stale ones
        cgroups._sweep(BASE)
        # Then only the earlier run's group went: the waiting one still takes its script
        assert not stale.exists() and waiting.path.is_dir()
        with waiting.joined_by_this_thread():
            child = subprocess.Popen(["/bin/true"])
        assert child.wait() == 0
    finally:
        waiting.close()
        if stale.exists():
            stale.rmdir()
    assert not waiting.path.exists()
