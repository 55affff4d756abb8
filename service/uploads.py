"""Image uploads: multipart bodies streamed to disk, then checked, stored once, and recorded.

Nothing is kept until the whole request has been read and checked: a request cut off half-way
leaves only its temporary folder, which is removed (and cleared at start after a crash).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiofiles
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from service.archives import (
    ARCHIVE_SUFFIXES,
    NESTED_SUFFIXES,
    ArchiveError,
    ArchiveLimits,
    ArchiveTooLarge,
    Member,
    Rejection,
    is_archive,
    unpack,
)
from service.db import write_transaction
from service.errors import BadRequest, Invalid, TooLarge
from service.imagecheck import CheckedImage, NotAnImage, check_image
from service.labels import check_label
from service.models import Image, ModelImage
from service.settings import Settings
from service.storage import store_image

CHUNK = 1 << 16
SPOOL_WRITE = 1 << 20
MAX_TEXT_FIELD = 1000
IN_BATCH = 500


@dataclass
class ReceivedFile:
    path: Path
    name: str
    offset: int = 0
    length: int = 0
    label: str | None = None  # the `label` part sent before it, if any


@dataclass
class Received:
    files: list[ReceivedFile] = field(default_factory=list)
    label: str | None = None  # the label in force: it applies to the file parts after it
    label_unused: bool = False  # a label part came, and no file part after it yet


class _RequestBudget:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.total = 0

    def add(self, size: int, written_for_file: int, name: str) -> None:
        self.total += size
        if written_for_file > self.settings.max_file_bytes:
            raise TooLarge(f"file {name!r} is larger than {self.settings.max_file_bytes} bytes")
        if self.total > self.settings.max_request_bytes:
            raise TooLarge(f"request is larger than {self.settings.max_request_bytes} bytes")


class Spool:
    """Every file part of a request, appended to one file through aiofiles in 1 MiB writes.

    One file and a few large writes instead of an open, writes and a close per part: a
    request of 2,000 small images costs 2,000 thread hops less. The parts are split into
    files of their own afterwards, in a worker thread, by a kernel-side copy."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.buffer = bytearray()
        self.size = 0
        self.handle: Any = None

    async def __aenter__(self) -> Spool:
        self.handle = await aiofiles.open(self.path, "wb")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.flush()
        await self.handle.close()

    async def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        self.size += len(chunk)
        if len(self.buffer) >= SPOOL_WRITE:
            await self.flush()

    async def flush(self) -> None:
        if self.buffer:
            await self.handle.write(bytes(self.buffer))
            self.buffer.clear()


async def _save_part(part: BodyPartReader, spool: Spool, budget: _RequestBudget) -> int:
    """Append the part to the spool; return its length."""
    written = 0
    name = part.filename or "upload"
    while chunk := await part.read_chunk(CHUNK):
        written += len(chunk)
        budget.add(len(chunk), written, name)
        await spool.write(chunk)
    return written


async def _read_text(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > MAX_TEXT_FIELD:
            raise Invalid(f"form field {part.name!r} is longer than {MAX_TEXT_FIELD} bytes",
                          field=part.name)
    return data.decode("utf-8", errors="replace")


async def _multipart(request: web.Request, settings: Settings) -> MultipartReader:
    if request.content_length and request.content_length > settings.max_request_bytes:
        raise TooLarge(f"request is larger than {settings.max_request_bytes} bytes")
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("expected a multipart/form-data body")
    return await request.multipart()


def _field_rule(file_field: str, labels: bool) -> str:
    rule = f"file parts named {file_field!r}, each with a filename"
    if labels:
        rule += ", and text parts 'label', each labelling the file parts after it"
    return rule


async def _read_parts(reader: MultipartReader, spool: Spool, received: Received,
                      file_field: str, labels: bool, budget: _RequestBudget) -> None:
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart bodies are not accepted")
        if part.name == file_field and part.filename is None:
            raise BadRequest(f"part {file_field!r} has no filename: send it as a file "
                             f"(curl -F '{file_field}=@path'); expected "
                             f"{_field_rule(file_field, labels)}", field=file_field)
        if part.name == file_field:
            offset = spool.size
            length = await _save_part(part, spool, budget)
            received.files.append(ReceivedFile(spool.path, part.filename or "upload", offset,
                                               length, received.label))
        elif labels and part.name == "label" and part.filename is None:
            received.label = await _read_text(part) or None
            received.label_unused = True
            continue
        else:
            raise BadRequest(f"unexpected form field {part.name!r}; expected "
                             f"{_field_rule(file_field, labels)}", field=part.name)
        received.label_unused = False
    if received.label_unused:
        raise BadRequest(f"the label part {received.label!r} is not followed by any file part: "
                         f"a label applies to the file parts after it, so send it first",
                         field="label")


async def receive_files(request: web.Request, settings: Settings, temp_dir: Path,
                        file_field: str, labels: bool = False) -> Received:
    """Stream every file part named `file_field` to disk, each into a file of its own; with
    `labels`, each `label` text part labels the file parts after it."""
    received = Received()
    try:
        reader = await _multipart(request, settings)
        async with Spool(temp_dir / "request.spool") as spool:
            await _read_parts(reader, spool, received, file_field, labels,
                              _RequestBudget(settings))
    except (ValueError, BadHttpMessage) as error:  # aiohttp's word for a broken body
        raise BadRequest(f"the multipart body is malformed: {error}") from None
    if not received.files:
        raise BadRequest(f"no file parts named {file_field!r} in the request")
    await asyncio.get_running_loop().run_in_executor(None, _split_spool, received)
    return received


def _split_spool(received: Received) -> None:
    """Give every received part a file of its own (blocking: run it in a thread)."""
    spool = received.files[0].path
    with open(spool, "rb") as source:
        for number, upload in enumerate(received.files):
            target = spool.parent / f"part-{number:06d}"
            with open(target, "wb") as out:
                copied = 0
                while copied < upload.length:  # copy_file_range may copy less than asked
                    copied += os.copy_file_range(source.fileno(), out.fileno(),
                                                 upload.length - copied,
                                                 upload.offset + copied)
            upload.path, upload.offset = target, 0
    spool.unlink()


@dataclass
class Candidate:
    image: CheckedImage
    name: str
    label: str | None


def _limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(settings.max_archive_members, settings.max_archive_bytes,
                         settings.max_file_bytes)


def _check(settings: Settings, path: Path, name: str, label: str | None,
           out: list[Candidate], rejected: list[Rejection]) -> None:
    try:
        out.append(Candidate(check_image(path, settings.max_image_pixels), name, label))
    except NotAnImage as error:
        rejected.append(Rejection(name, _unsupported_archive(name) or str(error)))
        path.unlink(missing_ok=True)


def _unsupported_archive(name: str) -> str | None:
    """A clearer reason than "not an image" for an archive of a kind we do not unpack."""
    if not name.lower().endswith(NESTED_SUFFIXES):
        return None
    return (f"archives of this kind are not accepted; send images, or a "
            f"{', '.join(ARCHIVE_SUFFIXES)} archive of them")


def _unpack_one(settings: Settings, upload: ReceivedFile, label: str | None,
                temp_dir: Path) -> tuple[list[Member], list[Rejection]]:
    folder = temp_dir / f"{upload.path.name}-unpacked"
    folder.mkdir()
    try:
        members, rejected = unpack(upload.path, folder, _limits(settings), label)
    except ArchiveTooLarge as error:  # a limit: the whole request is refused, nothing kept
        raise TooLarge(f"archive {upload.name!r}: {error}") from None
    except ArchiveError as error:
        return [], [Rejection(upload.name, f"archive refused: {error}")]
    prefix = f"{upload.name}:"
    return ([Member(m.path, prefix + m.name, m.label) for m in members],
            [Rejection(prefix + r.name, r.reason) for r in rejected])


def check_uploads(settings: Settings, received: Received,
                  temp_dir: Path) -> tuple[list[Candidate], list[Rejection]]:
    """Unpack archives and prove every file an image. Runs in a thread: Pillow blocks."""
    candidates: list[Candidate] = []
    rejected: list[Rejection] = []
    for upload in received.files:
        label = check_label(upload.label) if upload.label is not None else None
        if is_archive(upload.path, upload.name):
            members, refusals = _unpack_one(settings, upload, label, temp_dir)
            rejected += refusals
            for member in members:
                _check(settings, member.path, member.name, member.label, candidates, rejected)
        else:
            _check(settings, upload.path, upload.name, label, candidates, rejected)
        if len(candidates) > settings.max_images_per_request:
            raise TooLarge(f"more than {settings.max_images_per_request} images in one request "
                           f"(SWEEPLAB_MAX_IMAGES_PER_REQUEST)")
    return candidates, rejected


def _labels_in_model(model_id: int, hashes: list[str]) -> dict[str, str | None]:
    """The label of each of `hashes` the model already has."""
    found: dict[str, str | None] = {}
    for start in range(0, len(hashes), IN_BATCH):
        batch = hashes[start:start + IN_BATCH]
        query = ModelImage.select(ModelImage.image, ModelImage.label).where(
            ModelImage.model == model_id, ModelImage.image.in_(batch))
        found.update((row.image_id, row.label) for row in query)
    return found


def _image_row(image: CheckedImage) -> dict[str, Any]:
    return {"sha256": image.sha256, "extension": image.extension,
            "size_bytes": image.size_bytes, "width": image.width, "height": image.height}


@dataclass
class Recorded:
    added: int
    duplicates: int
    # images whose bytes the model already had under another label: the first label stays
    label_conflicts: list[dict[str, Any]]


def _split_fresh(candidates: list[Candidate], known: dict[str, str | None]
                 ) -> tuple[dict[str, Candidate], list[dict[str, Any]]]:
    fresh: dict[str, Candidate] = {}
    conflicts = []
    for candidate in candidates:
        sha = candidate.image.sha256
        if sha not in known and sha not in fresh:
            fresh[sha] = candidate
            continue
        kept = known[sha] if sha in known else fresh[sha].label
        if candidate.label is not None and candidate.label != kept:
            conflicts.append({"name": candidate.name, "sha256": sha, "label": candidate.label,
                              "kept_label": kept})
    return fresh, conflicts


def record_images(settings: Settings, model_id: int, candidates: list[Candidate]) -> Recorded:
    """Store the files, then add the rows in one transaction."""
    for candidate in candidates:  # files first: a crash here leaves no row without its file
        store_image(settings, candidate.image.path, candidate.image.sha256,
                    candidate.image.extension)
    with write_transaction():
        known = _labels_in_model(model_id, [c.image.sha256 for c in candidates])
        fresh, conflicts = _split_fresh(candidates, known)
        rows = [_image_row(c.image) for c in fresh.values()]
        for start in range(0, len(rows), IN_BATCH):
            Image.insert_many(rows[start:start + IN_BATCH]).on_conflict_ignore().execute()
        links = [{"model": model_id, "image": sha, "label": c.label,
                  "original_name": c.name[-255:]} for sha, c in fresh.items()]
        for start in range(0, len(links), IN_BATCH):
            ModelImage.insert_many(links[start:start + IN_BATCH]).execute()
    return Recorded(len(fresh), len(candidates) - len(fresh), conflicts)
