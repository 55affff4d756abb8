"""Remote workers: the snapshot fetch on a cold and a warm host, and the per-run cost of the
HTTP path against a local worker on the same sweep.

The fetch is timed in this process through the worker's own store (RestStore) against a live
API holding N distinct PNG images: cold (an empty cache), then warm (a second experiment on the
same images: nothing may cross the network). The sweep runs the same 27 sleeping runs once with
a local worker and once with a remote one (its own data directory, the API's worker routes),
each from the POST to completion as a polling client sees it; beside each, the CPU a run of
the API and of every worker process (the remote one's and, on the remote side, the
aggregating worker's), so that what the HTTP path costs shows where the time is.
"""

from __future__ import annotations

import io
import random
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from PIL import Image

from actors.stores.rest import RestStore
from bench.common import SLEEP_SCRIPT, Result, children, cpu_seconds, running_stack
from bench.sweep_overhead import time_sweep
from service.settings import load_settings
from service.sweeps.grid import expand_grid
from tests.e2e_support import ROOT, Stack, VirtualHost, multipart

TOKEN = "bench-worker-token"
GRID = {"i": [0.001, 0.01, 0.1], "j": [1, 2, 4], "k": [1000, 2000, 4000]}


def noise_images(count: int) -> bytes:
    """A zip of `count` distinct 8x8 PNGs in ten labels, digits-sized."""
    generator = random.Random(7)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number in range(count):
            image = Image.new("L", (8, 8))
            image.putdata([generator.randrange(256) for _ in range(64)])
            png = io.BytesIO()
            image.save(png, format="PNG")
            archive.writestr(f"{number % 10}/{number}.png", png.getvalue())
    return buffer.getvalue()


def api_stack(folder: Path, url: str, **env: str) -> Stack:
    stack = Stack(folder / "api", url, SWEEPLAB_WORKER_TOKEN=TOKEN,
                  SWEEPLAB_TRAIN_SCRIPT=str(SLEEP_SCRIPT), **env)
    stack.start_api()
    return stack


def upload(stack: Stack, images: int) -> int:
    _, model = stack.request("POST", "/api/v1/models", {"name": "bench-remote"})
    body, headers = multipart({"images": ("set.zip", noise_images(images))})
    status, _ = stack.request("POST", f"/api/v1/models/{model['id']}/images", data=body,
                              headers=headers)
    assert status == 201
    return model["id"]


def new_experiment(stack: Stack, model_id: int) -> int:
    _, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                               {"grid": {"i": [0.1], "j": [1], "k": [1]}, "start": False,
                                "reuse": False})
    return created["id"]


def fetch_times(images: int) -> list[Result]:
    with tempfile.TemporaryDirectory() as folder, VirtualHost() as url:
        stack = api_stack(Path(folder), url)
        try:
            model_id = upload(stack, images)
            store = RestStore(load_settings({"SWEEPLAB_DATA_DIR": str(Path(folder) / "host"),
                                             "SWEEPLAB_API_URL": stack.base,
                                             "SWEEPLAB_WORKER_TOKEN": TOKEN}))
            cold = timed(store, new_experiment(stack, model_id))
            fetched = store.cache.fetched
            warm = timed(store, new_experiment(stack, model_id))
            again = store.cache.fetched - fetched
        finally:
            stack.stop()
    return [Result(f"remote: cold snapshot of {images} images", f"{cold:.2f} s, "
                   f"{fetched} fetched", "<= 3 s", cold <= 3.0),
            Result(f"remote: warm snapshot of {images} images (second experiment)",
                   f"{warm:.3f} s, {again} fetched", "0 fetched", again == 0)]


def timed(store: RestStore, experiment_id: int) -> float:
    started = time.perf_counter()
    store.cache.snapshot(experiment_id)
    return time.perf_counter() - started


Sweeps = tuple[float, float, float]  # the median sweep's seconds; CPU ms a run: API, workers


def remote_sweep(sleep: float, threads: int, repeat: int) -> Sweeps:
    with tempfile.TemporaryDirectory() as folder, VirtualHost() as url:
        stack = api_stack(Path(folder), url, BENCH_SLEEP=str(sleep))
        dramatiq = str(Path(sys.executable).parent / "dramatiq")
        stack.worker = stack._spawn([dramatiq, "actors", "--queues", "sweeplab_aggregate"],
                                    "aggregate.log")
        stack.env.update(SWEEPLAB_DATA_DIR=str(Path(folder) / "host"),
                         SWEEPLAB_API_URL=stack.base, SWEEPLAB_WORKER_TOKEN=TOKEN)
        remote = stack._spawn([dramatiq, "actors", "--queues", "sweeplab_train",
                               "--processes", "1", "--threads", str(threads)], "remote.log")
        try:
            stack.model_id = upload(stack, 6)  # type: ignore[attr-defined]
            return median_sweep(stack, repeat, [stack.worker.pid, remote.pid])
        finally:
            remote.terminate()
            remote.wait(timeout=60)
            stack.stop()


def local_sweep(sleep: float, threads: int, repeat: int) -> Sweeps:
    with running_stack(threads=threads, BENCH_SLEEP=str(sleep)) as stack:
        assert stack.worker is not None
        return median_sweep(stack, repeat, [stack.worker.pid])


def median_sweep(stack: Stack, repeat: int, workers: list[int]) -> Sweeps:
    """The median of `repeat` sweeps, after one to warm up (queues, connections, caches), and
    the CPU a run over them of the API and the `workers` (Dramatiq masters, and their
    worker processes)."""
    time_sweep(stack, GRID)
    assert stack.api is not None
    api = stack.api.pid
    processes = [*workers, *(child for master in workers for child in children(master))]
    api_before, before = cpu_seconds(api), sum(cpu_seconds(pid) for pid in processes)
    seconds = statistics.median(time_sweep(stack, GRID)[0] for _ in range(repeat))
    runs = repeat * len(expand_grid(GRID))
    return (seconds, 1000 * (cpu_seconds(api) - api_before) / runs,
            1000 * (sum(cpu_seconds(pid) for pid in processes) - before) / runs)


def run(images: int, sleep: float, threads: int, repeat: int = 1) -> list[Result]:
    results = fetch_times(images)
    local, local_api, local_workers = local_sweep(sleep, threads, repeat)
    remote, remote_api, remote_workers = remote_sweep(sleep, threads, repeat)
    ratio = remote / local
    per_run_ms = (remote - local) / 27 * 1000
    results.append(Result(
        f"remote: 27 runs of {sleep:g} s on {threads} threads, HTTP path against a local worker",
        f"local {local:.2f} s, remote {remote:.2f} s (medians of {repeat}), ratio {ratio:.3f} "
        f"({per_run_ms:+.0f} ms a run); CPU a run: local API {local_api:.1f} ms, worker "
        f"{local_workers:.1f} ms; remote API {remote_api:.1f} ms, workers {remote_workers:.1f} "
        f"ms", "ratio <= 1.05", ratio <= 1.05))
    for result in results:
        print(result.line(), flush=True)
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    run(1797, 1.0, 9, 3)
