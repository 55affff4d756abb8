"""Upload throughput and the API's memory during uploads.

A large archive (noise PNGs, stored uncompressed) against `cp` + `fsync` of the same file on
the same disk (and plain `cp`, into the page cache, for reference), each side the median of
three (three archives of other images, each uploaded once); many small images in one
request, in images per second, on this machine's root file system and again on a fresh
journaled ext4 (see journaled_file_system: this root has no journal, which makes file creation
the bottleneck here, as it would not be on EC2); and the API's peak resident memory growth
during each, sampled every 10 ms.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import numpy as np
from PIL import Image

from bench.common import Result, cpu_times, rss_mb, running_stack
from tests.e2e_support import Stack
from tests.helpers import png_bytes

MEMORY_TARGET_MB = 30
SHARE_OF_SYNCED_CP = 0.25  # of cp + fsync of the same bytes
SMALL_RATE = 2000  # images/s


def noise_archive(path: Path, total_mb: int, seed: int = 0) -> int:
    """A zip of 512x512 noise PNGs (incompressible), about `total_mb` MiB; returns its count."""
    rng = np.random.default_rng(seed)
    count = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        while path.stat().st_size < total_mb << 20:
            buffer = io.BytesIO()
            pixels = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
            archive.writestr(f"{count % 10}/{count:05d}.png", buffer.getvalue())
            count += 1
            archive.fp.flush()
    return count


class PeakMemory:
    """Samples a process's resident memory in a thread; the peak above the start. Also the
    CPU time the process spent meanwhile: on a busy machine the elapsed time says how long
    the user waited, the CPU time how much work the upload is."""

    def __init__(self, pid: int) -> None:
        self.pid, self.start, self.peak = pid, rss_mb(pid), rss_mb(pid)
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.cpu_start = self.cpu_end = cpu_times(pid)

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()
        self.cpu_end = cpu_times(self.pid)

    @property
    def cpu(self) -> str:
        user, system = (end - start for end, start in zip(self.cpu_end, self.cpu_start,
                                                           strict=True))
        return f"API CPU {user + system:.2f} s (user {user:.2f}, sys {system:.2f})"

    @property
    def growth(self) -> float:
        return self.peak - self.start


async def post_files(url: str, files: list[tuple[str, object]], label: str | None) -> dict:
    form = aiohttp.FormData()
    if label:
        form.add_field("label", label)
    for name, content in files:
        form.add_field("images", content, filename=name,
                       content_type="application/octet-stream")
    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.post(url, data=form) as response:
        assert response.status == 201, await response.text()
        return await response.json()


def upload_archive(stack: Stack, archive: Path) -> tuple[float, PeakMemory, dict]:
    url = f"{stack.base}/api/v1/models/{stack.model_id}/images"
    with PeakMemory(stack.api.pid) as memory:
        started = time.perf_counter()
        with open(archive, "rb") as handle:  # streamed from the file, never read whole
            body = asyncio.run(post_files(url, [(archive.name, handle)], None))
        elapsed = time.perf_counter() - started
    return elapsed, memory, body


def time_cp(source: Path, folder: Path, durable: bool) -> float:
    """`cp` of the archive on the same disk: into the page cache, or through to the disk."""
    started = time.perf_counter()
    shutil.copyfile(source, folder / "copy.zip")
    if durable:
        with open(folder / "copy.zip", "rb+") as handle:
            os.fsync(handle.fileno())
    elapsed = time.perf_counter() - started
    (folder / "copy.zip").unlink()
    return elapsed


def large_upload(stack: Stack, archive_mb: int, rounds: int = 3) -> Result:
    """Each side measured the same way: the median of `rounds` uploads (each of other images,
    so each stores them afresh) against the median of `rounds` copies."""
    uploads, copies, synced, growths = [], [], [], []
    for seed in range(rounds):
        with tempfile.TemporaryDirectory(dir=stack.data_dir.parent) as folder:
            archive = Path(folder) / "large.zip"
            count = noise_archive(archive, archive_mb, seed)
            size_mb = archive.stat().st_size / 2**20
            copies.append(time_cp(archive, Path(folder), durable=False))
            synced.append(time_cp(archive, Path(folder), durable=True))
            elapsed, memory, body = upload_archive(stack, archive)
        assert body["added"] == count, body
        uploads.append(elapsed)
        growths.append(memory.growth)
    elapsed, copy_s, synced_s = (statistics.median(times) for times in (uploads, copies, synced))
    share, growth = synced_s / elapsed, max(growths)
    return Result(
        f"upload: one {size_mb:.0f} MiB archive of {count} images",
        f"{size_mb / elapsed:.0f} MiB/s vs cp + fsync {size_mb / synced_s:.0f} MiB/s "
        f"({share:.2f}x; plain cp {size_mb / copy_s:.0f} MiB/s, {copy_s / elapsed:.2f}x; "
        f"medians of {rounds}, uploads at {', '.join(f'{size_mb / t:.0f}' for t in uploads)} "
        f"MiB/s); API peak memory growth {growth:.1f} MB; {memory.cpu} (the last)",
        f">= {SHARE_OF_SYNCED_CP}x cp + fsync, growth <= {MEMORY_TARGET_MB} MB",
        share >= SHARE_OF_SYNCED_CP and growth <= MEMORY_TARGET_MB)


def small_upload(stack: Stack, small_images: int, where: str) -> Result:
    files = [(f"{n}.png", png_bytes(n % 256, size=8 + n % 7)) for n in range(small_images)]
    url = f"{stack.base}/api/v1/models/{stack.model_id}/images"
    with PeakMemory(stack.api.pid) as memory:
        started = time.perf_counter()
        body = asyncio.run(post_files(url, files, "7"))
        elapsed = time.perf_counter() - started
    rate = small_images / elapsed
    return Result(
        f"upload: {small_images} small images in one request, {where}",
        f"{rate:.0f} images/s ({body['added']} added, {body['duplicates']} duplicates); "
        f"API peak memory growth {memory.growth:.1f} MB; {memory.cpu}",
        f">= {SMALL_RATE} images/s, growth <= {MEMORY_TARGET_MB} MB",
        rate >= SMALL_RATE and memory.growth <= MEMORY_TARGET_MB)


@contextmanager
def journaled_file_system(size_mb: int = 1024) -> Iterator[Path | None]:
    """A fresh ext4 file system with a journal, as EC2's volumes have, in a file on this disk,
    mounted on a loop device (root only; None otherwise). This machine's root file system has
    no journal: ext4 then makes every file creation skip past each inode deleted in the last
    minute or so, reading its inode block (`recently_deleted`), which after the earlier
    benchmarks' clean-ups costs about 0.5 ms a file."""
    if os.geteuid() != 0 or not shutil.which("mkfs.ext4"):
        yield None
        return
    with tempfile.TemporaryDirectory() as folder:
        image, mount = Path(folder) / "fs.img", Path(folder) / "mnt"
        mount.mkdir()
        with open(image, "wb") as handle:
            handle.truncate(size_mb << 20)
        mounted = all(subprocess.run(command, capture_output=True).returncode == 0 for command in (
            ["mkfs.ext4", "-q", "-F", str(image)], ["mount", "-o", "loop", str(image), str(mount)]))
        if not mounted:  # no loop devices here (a container, say)
            yield None
            return
        try:
            yield mount
        finally:
            subprocess.run(["umount", str(mount)], check=True)


def run(archive_mb: int, small_images: int) -> list[Result]:
    results = []
    with running_stack(threads=1, SWEEPLAB_MAX_IMAGES_PER_REQUEST="100000") as stack:
        results.append(large_upload(stack, archive_mb))
        print(results[-1].line(), flush=True)
        results.append(small_upload(stack, small_images, "this machine's root file system"))
        print(results[-1].line(), flush=True)
    with journaled_file_system() as scratch:
        if scratch is None:
            print("upload: no journaled file system to measure on (needs root)", flush=True)
            return results
        with running_stack(threads=1, base=scratch,
                           SWEEPLAB_MAX_IMAGES_PER_REQUEST="100000") as stack:
            results.append(small_upload(stack, small_images, "a fresh journaled ext4"))
            print(results[-1].line(), flush=True)
    return results
