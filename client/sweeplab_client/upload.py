"""Uploading images: files, archives and folders (a folder's files labelled by the folder
they sit in, `digits/7/a.png` -> 7, as the API labels an archive's members), sent in
requests of bounded size, each retried when the server could not take it, the answers summed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeplab_client.models import UploadResult
from sweeplab_client.operations import path_of
from sweeplab_client.session import ApiError, ConnectionFailed, Session

ARCHIVES = (".zip", ".tar.gz", ".tgz", ".tar")
BATCH_BYTES = 32 * 1024 * 1024  # per request: far below the server's limit, quick to resend
BATCH_FILES = 1000
RETRIES = 3  # a request that failed is sent again this many times, 1, 2, 4 s apart
RETRY_STATUSES = (500, 502, 503, 504)


@dataclass(frozen=True)
class Item:
    path: Path
    name: str  # the filename sent: its path below the folder given, for the server's messages
    label: str | None
    size: int


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVES)


def _folder_items(folder: Path) -> Iterator[Item]:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # .DS_Store, .git: never training data
        label = path.parent.name if path.parent != folder else None
        name = str(path.relative_to(folder))
        yield Item(path, name, label, path.stat().st_size)


def collect(paths: list[str]) -> list[Item]:
    """What to send for the paths given: files and archives as they are, folders walked."""
    items: list[Item] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            items += _folder_items(path)
        elif path.is_file():
            items.append(Item(path, path.name, None, path.stat().st_size))
        else:
            raise FileNotFoundError(f"no such file or folder: {given}")
    return items


def batches(items: list[Item], max_bytes: int = BATCH_BYTES,
            max_files: int = BATCH_FILES) -> Iterator[list[Item]]:
    """Consecutive groups of at most max_bytes (a larger file goes alone) and max_files."""
    batch: list[Item] = []
    size = 0
    for item in items:
        if batch and (size + item.size > max_bytes or len(batch) >= max_files):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch


def _parts(batch: list[Item], stack: ExitStack) -> list[tuple[str, Any]]:
    """The multipart parts: unlabelled files first (a `label` part labels every file part
    after it, up to the next one), then each label followed by its files."""
    ordered = sorted(batch, key=lambda item: (item.label is not None, item.label or ""))
    parts: list[tuple[str, Any]] = []
    current: str | None = None
    for item in ordered:
        if item.label is not None and item.label != current:
            parts.append(("label", (None, item.label)))
            current = item.label
        handle = stack.enter_context(item.path.open("rb"))
        parts.append(("images", (item.name, handle, "application/octet-stream")))
    return parts


def _send(session: Session, model_id: int, batch: list[Item]) -> dict[str, Any]:
    """One request, sent again on a failure that is not the request's fault. An answer of
    422 (no image kept) still carries what was rejected."""
    for attempt in range(RETRIES + 1):
        try:
            with ExitStack() as stack:  # files opened afresh for each attempt
                response = session.request("POST", path_of("upload_images", id=model_id),
                                           files=_parts(batch, stack))
                return response.json()
        except ApiError as error:
            if error.status == 422 and "rejected" in error.body:
                return {"added": 0, "duplicates": 0, "rejected": error.body["rejected"]}
            if error.status not in RETRY_STATUSES or attempt == RETRIES:
                raise
        except ConnectionFailed:
            if attempt == RETRIES:
                raise
        time.sleep(2 ** attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


Progress = Callable[[int, int], None]  # (bytes, images) sent since the last call


def upload(session: Session, model_id: int, paths: list[str],
           on_sent: Progress | None = None, max_bytes: int = BATCH_BYTES) -> UploadResult:
    """Send every file of `paths` to the model; the summed answer of every request."""
    result = UploadResult()
    for batch in batches(collect(paths), max_bytes=max_bytes):
        result.add(_send(session, model_id, batch))
        if on_sent:
            on_sent(sum(item.size for item in batch), len(batch))
    return result


def total_size(paths: list[str]) -> tuple[int, int]:
    """(bytes, files) of what `paths` hold."""
    items = collect(paths)
    return sum(item.size for item in items), len(items)
