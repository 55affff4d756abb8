"""Stopping the worker the way its systemd unit does, signals and all.

systemd stops a unit by its `KillMode`: `control-group` sends SIGTERM to every process of the
unit at once (Dramatiq's worker process then gets it twice and dies hard, and the scripts die
without their runs being put back); `mixed` sends SIGTERM to the main process only and SIGKILL
to whatever is left after `TimeoutStopSec`. The test reads both from the unit file and plays
them on a real worker, so it checks the unit as written.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e_support import (
    FAKE_SCRIPTS,
    ROOT,
    script_processes,
    small_dataset,
    terminal_events_per_run,
    wait_until_running,
)

pytestmark = pytest.mark.e2e
UNIT = ROOT / "systemd" / "sweeplab-worker.service"


def unit_setting(name: str) -> str:
    return re.search(rf"^{name}=(\S+)", UNIT.read_text(), re.M).group(1)


def unit_processes(main_pid: int) -> list[int]:
    """The main process and all its descendants: what the unit's control group holds."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [main_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_like_systemd(main: subprocess.Popen[bytes]) -> float:
    """`systemctl stop` as the unit's KillMode and TimeoutStopSec say; seconds it took."""
    kill_mode, timeout_s = unit_setting("KillMode"), float(unit_setting("TimeoutStopSec"))
    started = time.monotonic()
    group = unit_processes(main.pid)
    signal_all(group if kill_mode == "control-group" else [main.pid], signal.SIGTERM)
    try:
        main.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    signal_all(unit_processes(main.pid) if main.poll() is None else group, signal.SIGKILL)
    main.wait()
    return time.monotonic() - started


def test_systemctl_stop_requeues_the_running_runs_and_leaves_no_script(make_stack):
    # Given a worker running two long runs, started as its unit starts it
    assert unit_setting("KillMode") in ("mixed", "control-group")
    stack = make_stack(threads=2, FAKE_TRAIN_SLEEP="60", **FAKE_SCRIPTS)
    model_id = small_dataset(stack)
    _, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                               {"grid": {"i": [0.1], "j": [1, 2], "k": [1]}})
    wait_until_running(stack, created["id"], succeeded_at_least=0)
    # When it is stopped with the unit's signals
    took = stop_like_systemd(stack.worker)
    # Then the worker stopped itself before the hard kill, put both runs back, left no script
    assert took < float(unit_setting("TimeoutStopSec"))
    assert script_processes(stack.data_dir) == []
    _, body = stack.get(f"/api/v1/experiments/{created['id']}")
    assert body["counts"]["queued"] == 2, (body["counts"], stack.log("worker-1.log"))
    assert "Killing worker process" not in stack.log("worker-1.log")
    # And the next worker runs them, each once
    stack.env["FAKE_TRAIN_SLEEP"] = "0.1"
    stack.start_worker()
    done = stack.wait_for_experiment(created["id"])
    assert done["counts"]["succeeded"] == 2
    assert terminal_events_per_run(stack.data_dir) == {run["id"]: 1 for run in done["runs"]}
