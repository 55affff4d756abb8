"""The API under load: 32 concurrent clients for 20 s on `GET /api/v1/experiments/{id}` (27
runs) and `GET /api/v1/models`, while a sweep runs on the same machine.

The load comes from Debian's `wrk` (C, light on the CPU the API needs); without it, from an
aiohttp client in this process, which takes a core of its own and so weighs on the figures.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import Result, percentile, running_stack

TARGET_P99_MS = 50


async def _client(session: aiohttp.ClientSession, paths: list[str], deadline: float,
                  latencies: list[float], errors: list[str]) -> None:
    turn = 0
    while time.perf_counter() < deadline:
        path = paths[turn % len(paths)]
        turn += 1
        started = time.perf_counter()
        try:
            async with session.get(path) as response:
                await response.read()
                if response.status != 200:
                    errors.append(f"{path}: {response.status}")
        except aiohttp.ClientError as error:
            errors.append(f"{path}: {error}")
        latencies.append(time.perf_counter() - started)


async def _load(base: str, paths: list[str], clients: int, seconds: float
                ) -> tuple[list[float], list[str]]:
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, connector=connector) as session:
        await asyncio.gather(*(_client(session, paths, deadline, latencies, errors)
                               for _ in range(clients)))
    return latencies, errors


WRK_SCRIPT = """
paths = {%s}
turn = 0
request = function()
  turn = turn + 1
  return wrk.format("GET", paths[(turn %% #paths) + 1])
end
"""


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _wrk(base: str, paths: list[str], clients: int, seconds: float) -> tuple[float, float,
                                                                             float, int]:
    """requests/s, p50 ms, p99 ms, errors — as wrk measured them."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % ", ".join(f'"{path}"' for path in paths))
    done = subprocess.run(["wrk", "-t", "2", "-c", str(clients), "-d", f"{seconds:g}s",
                           "--latency", "-s", script.name, base], capture_output=True,
                          text=True, check=True)
    Path(script.name).unlink()
    out = done.stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|errors: \D*)(\d+)",
                                            out))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, _ms(latency["50"]), _ms(latency["99"]), errors


def _python_load(base: str, paths: list[str], clients: int, seconds: float
                 ) -> tuple[float, float, float, int]:
    latencies, errors = asyncio.run(_load(base, paths, clients, seconds))
    return (len(latencies) / seconds, percentile(latencies, 0.5) * 1000,
            percentile(latencies, 0.99) * 1000, len(errors))


def run(clients: int, seconds: float) -> list[Result]:
    with running_stack(threads=2, BENCH_SLEEP="0.5") as stack:
        status, done = stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments",
                                     {"reuse": False})
        stack.wait_for_experiment(done["id"])
        # a second sweep keeps the workers busy while the clients read the first
        stack.request("POST", f"/api/v1/models/{stack.model_id}/experiments", {"reuse": False})
        paths = [f"/api/v1/experiments/{done['id']}", "/api/v1/models"]
        generator = "wrk" if shutil.which("wrk") else "aiohttp client"
        measure = _wrk if shutil.which("wrk") else _python_load
        rps, p50, p99, errors = measure(stack.base, paths, clients, seconds)
    result = Result(
        f"API under load: {clients} clients ({generator}) for {seconds:g} s during a sweep",
        f"{rps:.0f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, {errors} errors",
        f"0 errors, p99 <= {TARGET_P99_MS} ms", not errors and p99 <= TARGET_P99_MS)
    print(result.line(), flush=True)
    return [result]
