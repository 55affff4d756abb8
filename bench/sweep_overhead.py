"""Sweep overhead: a 27-run sweep through sweeplab against `xargs -P N` over the same commands.

    .venv/bin/python -m bench.sweep_overhead [--sleep 1] [--threads 8] [--repeat 1]

Both run the same 27 commands (`python bench/sleep_train.py --i … --images DIR`) with N at once;
sweeplab's time is from the POST that creates the experiment to the moment a client polling
`GET /api/v1/experiments/{id}` every 20 ms sees it completed. Target: ratio <= 1.05 at 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from service.grid import DEFAULT_GRID, expand_grid
from tests.e2e_support import Stack, VirtualHost, multipart
from tests.helpers import png_bytes, zip_bytes

SCRIPT = Path(__file__).resolve().parent / "sleep_train.py"
TARGETS = {1.0: 1.05, 0.1: 1.25}


def commands(images: Path) -> list[str]:
    return [f"{sys.executable} {SCRIPT} --i {p.i!r} --j {p.j} --k {p.k} --images {images}"
            for p in expand_grid(DEFAULT_GRID)]


def time_xargs(lines: list[str], threads: int, sleep: float) -> float:
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", str(threads), "-L", "1", "env", f"BENCH_SLEEP={sleep}"],
                   input="\n".join(lines) + "\n", text=True, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def prepare(stack: Stack) -> int:
    _, model = stack.request("POST", "/api/v1/models", {"name": "bench"})
    archive = zip_bytes({f"{label}/{n}.png": png_bytes(label * 10 + n)
                         for label in (1, 2) for n in range(3)})
    body, headers = multipart({"images": ("train.zip", archive)})
    stack.request("POST", f"/api/v1/models/{model['id']}/images", data=body, headers=headers)
    return model["id"]


def time_sweep(stack: Stack, model_id: int) -> float:
    started = time.perf_counter()
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments", {})
    assert status == 201, created
    while True:
        _, body = stack.get(f"/api/v1/experiments/{created['id']}")
        if body["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    assert body["counts"]["succeeded"] == 27, body["counts"]
    return elapsed


def run(sleep: float, threads: int, repeat: int) -> float:
    with tempfile.TemporaryDirectory() as folder, VirtualHost() as url:
        stack = Stack(Path(folder) / "data", url, threads=threads,
                      SWEEPLAB_TRAIN_SCRIPT=str(SCRIPT), BENCH_SLEEP=str(sleep))
        try:
            stack.start_api()
            stack.start_worker()
            model_id = prepare(stack)
            time_sweep(stack, model_id)  # warm-up: queues declared, connections open
            sweeps = [time_sweep(stack, model_id) for _ in range(repeat)]
        finally:
            stack.stop()
        lines = commands(stack.data_dir / "snapshots" / "1")
        baselines = [time_xargs(lines, threads, sleep) for _ in range(repeat)]
    sweep, baseline = statistics.median(sweeps), statistics.median(baselines)
    ratio = sweep / baseline
    target = TARGETS.get(sleep)
    verdict = "" if target is None else (" PASS" if ratio <= target else " FAIL") + \
        f" (target <= {target})"
    print(f"sweep overhead S={sleep:g}s N={threads}: sweeplab {sweep:.3f}s, "
          f"xargs {baseline:.3f}s, ratio {ratio:.3f}{verdict}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    run(args.sleep, args.threads, args.repeat)


if __name__ == "__main__":
    main()
