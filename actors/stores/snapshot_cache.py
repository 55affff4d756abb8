"""A remote worker's snapshots, laid out from a per-host cache of images named by content.

The worker asks the API for an experiment's manifest (label and SHA-256 of each image), fetches
only the images this host does not hold yet (in batches, as tar streams), checks every one
against its hash, and lays out `<label>/<sha>.<ext>` with hard links, exactly as a local worker
sees it. Each image crosses the network at most once per host; threads needing the same
snapshot wait for the one that builds it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from service.storage import image_in

BATCH = 200
FETCH_THREADS = 4
CHUNK = 1 << 20

Manifest = list[dict[str, Any]]
FetchManifest = Callable[[int], Manifest]
FetchImages = Callable[[list[dict[str, str]]], Iterator[IO[bytes]]]


class CorruptImage(Exception):
    """Bytes that do not match the hash they were asked by."""


class SnapshotCache:
    def __init__(self, root: Path, fetch_manifest: FetchManifest,
                 fetch_images: FetchImages) -> None:
        self.images = root / "cache" / "images"
        self.snapshots = root / "snapshots"
        self.fetch_manifest, self.fetch_images = fetch_manifest, fetch_images
        self.locks: dict[int, threading.Lock] = {}
        self.locks_lock = threading.Lock()
        self.fetched = 0  # images downloaded by this process (the benchmark reads it)

    def snapshot(self, experiment_id: int) -> Path:
        final = self.snapshots / str(experiment_id)
        if final.is_dir():
            return final
        with self._lock(experiment_id):
            if not final.is_dir():  # another thread may have built it while we waited
                self._build(experiment_id, final)
        return final

    def _lock(self, experiment_id: int) -> threading.Lock:
        with self.locks_lock:
            return self.locks.setdefault(experiment_id, threading.Lock())

    def cached(self, sha: str, extension: str) -> Path:
        return image_in(self.images, sha, extension)

    def _build(self, experiment_id: int, final: Path) -> None:
        manifest = self.fetch_manifest(experiment_id)
        missing = {(item["sha256"], item["extension"]) for item in manifest
                   if not self.cached(item["sha256"], item["extension"]).exists()}
        self._fetch(sorted(missing))
        staging = self.snapshots / f".{experiment_id}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            for item in manifest:
                folder = staging / item["label"] if item["label"] else staging
                folder.mkdir(exist_ok=True)
                source = self.cached(item["sha256"], item["extension"])
                os.link(source, folder / source.name)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _fetch(self, missing: list[tuple[str, str]]) -> None:
        """Batches in parallel: the API reads files while this side hashes and writes."""
        batches = [missing[start:start + BATCH] for start in range(0, len(missing), BATCH)]
        with ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fetch") as pool:
            for _ in pool.map(self._fetch_batch, batches):
                pass  # map re-raises the first batch's error here

    def _fetch_batch(self, batch: list[tuple[str, str]]) -> None:
        wanted = {f"{sha}.{ext}": (sha, ext) for sha, ext in batch}
        for stream in self.fetch_images([{"sha256": s, "extension": e} for s, e in batch]):
            self._take_stream(stream, wanted)
        if wanted:
            raise CorruptImage(f"the API did not send {len(wanted)} image(s), such as "
                               f"{next(iter(wanted))}")

    def _take_stream(self, stream: IO[bytes], wanted: dict[str, tuple[str, str]]) -> None:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if member.name not in wanted or not member.isfile():
                    raise CorruptImage(f"unexpected member {member.name!r} in the images sent")
                sha, ext = wanted.pop(member.name)
                self._store(tar.extractfile(member), sha, ext)

    def _store(self, source: IO[bytes] | None, sha: str, extension: str) -> None:
        target = self.cached(sha, extension)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f".{target.name}.{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        with open(temp, "wb") as out:
            while source is not None and (chunk := source.read(CHUNK)):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha:
            temp.unlink()
            raise CorruptImage(f"image {sha} arrived with other bytes (SHA-256 "
                               f"{digest.hexdigest()}); nothing was kept")
        os.replace(temp, target)
        with self.locks_lock:
            self.fetched += 1
