"""What the benchmarks share: a live stack on its own RabbitMQ virtual host, percentiles,
resident memory, the machine's description, and the result rows RESULTS.md is made of."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e_support import Stack, VirtualHost, multipart
from tests.helpers import png_bytes, zip_bytes

BENCH = Path(__file__).resolve().parent
SLEEP_SCRIPT = BENCH / "sleep_train.py"


@dataclass
class Result:
    benchmark: str
    figure: str
    target: str
    passed: bool | None  # None: a figure without a target

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "—"}[self.passed]

    def line(self) -> str:
        return f"{self.benchmark}: {self.figure} [{self.verdict}; target {self.target}]"


@contextmanager
def running_stack(threads: int = 8, processes: int = 1, base: Path | None = None,
                  **env: str) -> Iterator[Stack]:
    """API and worker processes on a throw-away virtual host, with a small labelled model;
    their data directory in a temporary folder (inside `base`, if given)."""
    with tempfile.TemporaryDirectory(dir=base) as folder, VirtualHost() as url:
        stack = Stack(Path(folder) / "data", url, threads=threads, processes=processes,
                      **{"SWEEPLAB_TRAIN_SCRIPT": str(SLEEP_SCRIPT), **env})
        try:
            stack.start_api()
            stack.start_worker()
            stack.model_id = small_model(stack)  # type: ignore[attr-defined]
            yield stack
        finally:
            stack.stop()


def small_model(stack: Stack) -> int:
    _, model = stack.request("POST", "/api/v1/models", {"name": "bench"})
    archive = zip_bytes({f"{label}/{n}.png": png_bytes(label * 10 + n)
                         for label in (1, 2) for n in range(3)})
    body, headers = multipart({"images": ("train.zip", archive)})
    stack.request("POST", f"/api/v1/models/{model['id']}/images", data=body, headers=headers)
    return model["id"]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(share * 100) - 1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """A process's CPU seconds so far, to the nanosecond: the scheduler's own count for each
    of its live threads. (/proc/PID/stat's user and system times are sampled at each clock
    tick, and a process woken in step with the tick, as by a client polling on a timer, is
    charged whole ticks: it overstated the API's CPU per poll about twofold.)"""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
    return total / 1e9


def cpu_times(pid: int) -> tuple[float, float]:
    """A process's user and system CPU seconds so far (all its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    rabbit = subprocess.run(["rabbitmqctl", "version"], capture_output=True, text=True)
    return (f"{cpu}, {os.cpu_count()} cores, {memory_kb / 1024 / 1024:.1f} GiB, "
            f"Linux {platform.release()}, Python {platform.python_version()}, "
            f"RabbitMQ {rabbit.stdout.strip() or 'unknown'}")
