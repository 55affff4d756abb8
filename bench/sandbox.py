"""The sandbox's cost a script: starting `python -c pass` the way a training run starts (its
view, its limits) in bubblewrap against today's launch without it. Rounds alternate, so the
machine's other load falls on all alike; each figure is the median over the rounds."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

from bench.common import Result
from service.execution.command import deployment_train
from service.execution.sandbox import ScriptView, bwrap_works, launch_command
from service.execution.views import training_view
from service.settings import ensure_data_dirs, load_settings

TARGET_MS = 20.0


def start_ms(argv: list[str], view: ScriptView) -> float:
    """One start to its end, in ms, launched exactly as a run is (and its cgroup freed)."""
    started = time.perf_counter()
    launch = launch_command(argv, view)
    child = launch.popen(cwd=view.workdir, stdin=subprocess.DEVNULL)
    assert child.wait() == 0
    launch.ended()
    return (time.perf_counter() - started) * 1000


def medians(rounds: int, argv: list[str], views: dict[str, ScriptView]) -> dict[str, float]:
    timings: dict[str, list[float]] = {name: [] for name in views}
    for _ in range(rounds):  # alternating, so the machine's other load falls on all alike
        for name, view in views.items():
            timings[name].append(start_ms(argv, view))
    return {name: statistics.median(values) for name, values in timings.items()}


def run(rounds: int) -> list[Result]:
    if not bwrap_works():
        print("sandbox: bubblewrap cannot run here; skipped")
        return [Result("sandbox: start of `python -c pass`", "bubblewrap unavailable",
                       f"< {TARGET_MS:g} ms a run", None)]
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings({"SWEEPLAB_DATA_DIR": folder, "SWEEPLAB_PYTHON": sys.executable})
        ensure_data_dirs(settings)
        run_dir, images = settings.runs_dir / "1", settings.snapshots_dir / "1"
        run_dir.mkdir()
        images.mkdir()
        sandboxed = training_view(settings, deployment_train(settings), images, run_dir, {})
        # today's launch (no sandbox, no limits); the sandbox with the memory limit, and the
        # task limit as a service user gets it (RLIMIT_NPROC inside it: no cgroup); and as
        # root, whom RLIMIT_NPROC does not bind, with its pids cgroup
        found = medians(rounds, [sys.executable, "-c", "pass"], {
            "today": replace(sandboxed, sandbox=False, memory_mb=0, tasks=0),
            "sandbox": replace(sandboxed, tasks=0), "cgroup": sandboxed})
    extra = found["sandbox"] - found["today"]
    results = [
        Result("sandbox: start of `python -c pass` in bubblewrap",
               f"{found['sandbox']:.1f} ms against {found['today']:.1f} ms without it "
               f"(+{extra:.1f} ms, ratio {found['sandbox'] / found['today']:.2f}; medians of "
               f"{rounds})", f"< {TARGET_MS:g} ms a run", extra < TARGET_MS),
        Result("sandbox: the task limit's pids cgroup (scripts started by root only)",
               f"+{found['cgroup'] - found['sandbox']:.1f} ms a start (the kernel's cgroup "
               "migration)", "—", None)]
    for result in results:
        print(result.line())
    return results


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
