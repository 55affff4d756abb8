"""Receiving upload requests: every multipart file part streamed to a file of its own, once.

Each file part is hashed in the same loop that hands its bytes to the writer, so nothing reads
it back for its SHA-256 (an archive is not hashed: its members are, as they are unpacked).
A large part goes straight to its own file in 1 MiB aiofiles writes, one write in flight while
the next bytes are parsed; small parts are written in batches, one thread hop for many files
(a request of 2,000 small images would otherwise cost three hops a part), and kept in memory,
within a per-request budget, so the check does not read them back either. An archive part,
given an unpacker, is not written at all: its bytes go to the unpacker's thread as they arrive
(service.ingest.unpacking), which writes only its members.

Nothing is kept until the whole request has been read and checked: a request cut off half-way
leaves only its temporary folder, which the caller removes (and which is cleared at start after
a crash). No write, and no unpacking, is left running when `receive_files` returns or raises.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os
from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import BadHttpMessage

from service.core.errors import BadRequest, Invalid, TooLarge
from service.ingest.archives import is_archive_head, stream_kind
from service.ingest.unpacking import StreamedUnpack, Unpacker, UnpackFailed
from service.settings import Settings

CHUNK = 1 << 20  # asked of read_chunk, which hands over what has arrived, up to this
WRITE_SIZE = 1 << 20  # bytes a large part collects before one write: few thread hops
SMALL_PART = 256 << 10  # a part no larger is written with others in one batch
BATCH_BYTES = 1 << 20  # a batch of small parts is written once it holds this much
BATCH_FILES = 256  # ... or this many files
KEEP_BYTES = 8 << 20  # small parts kept in memory for the check, per request
HEAD = 4  # bytes that tell an archive (zip, gzip magic) from an image
MAX_TEXT_FIELD = 1000

# What browsers, curl and aiohttp send: `form-data; name="images"; filename="a.png"`. For a
# header exactly of this form aiohttp's parser gives these same two values, at a hundredth of
# the cost (it rebuilds an escape table on every call: 30 µs, three calls a part). Anything
# else (other order, escapes, slashes, RFC 5987 names) goes to aiohttp's own parser.
_SIMPLE_DISPOSITION = re.compile(
    r'form-data; name="([A-Za-z0-9_.-]+)"(?:; filename="([^"\\/;\x00-\x1f\x7f]*)")?')


@dataclass
class ReceivedFile:
    path: Path
    name: str
    label: str | None = None  # the `label` part sent before it, if any
    field: str = ""  # the name of the part it came in
    size: int = 0
    archive: bool = False  # by its name or its first bytes: unpacked, not checked as an image
    sha256: str | None = None  # of its bytes, for a file that is not an archive
    data: bytes | None = None  # its bytes, for a small file within the request's budget
    unpacked: Any = None  # an archive unpacked while it arrived (never written): what it held


@dataclass
class Received:
    files: list[ReceivedFile] = field(default_factory=list)
    label: str | None = None  # the label in force: it applies to the file parts after it
    label_unused: bool = False  # a label part came, and no file part after it yet


class _RequestBudget:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.total = 0
        self.kept = 0  # bytes of small parts kept in memory

    def add(self, size: int, written_for_file: int, name: str) -> None:
        self.total += size
        if written_for_file > self.settings.max_file_bytes:
            raise TooLarge(f"file {name!r} is larger than {self.settings.max_file_bytes} bytes")
        if self.total > self.settings.max_request_bytes:
            raise TooLarge(f"request is larger than {self.settings.max_request_bytes} bytes")

    def keep(self, size: int) -> bool:
        if self.kept + size > KEEP_BYTES:
            return False
        self.kept += size
        return True


def _write_files(batch: list[tuple[Path, bytes]]) -> None:
    """Write each small file of a batch (blocking: run through aiofiles in a thread)."""
    for path, data in batch:
        with open(path, "wb") as out:
            out.write(data)


_write_batch = aiofiles.os.wrap(_write_files)


class _Writer:
    """The request's writes, in order, with at most one in flight: while the thread writes,
    the loop goes on parsing the next bytes (the stream buffers little by itself)."""

    def __init__(self) -> None:
        self.in_flight: asyncio.Future[Any] | None = None
        self.batch: list[tuple[Path, bytes]] = []
        self.batch_bytes = 0

    async def start(self, write: Awaitable[Any]) -> None:
        await self.wait()
        self.in_flight = asyncio.ensure_future(write)

    async def wait(self) -> None:
        if self.in_flight is not None:
            in_flight, self.in_flight = self.in_flight, None
            await in_flight

    async def add_small(self, path: Path, data: bytes) -> None:
        self.batch.append((path, data))
        self.batch_bytes += len(data)
        if self.batch_bytes >= BATCH_BYTES or len(self.batch) >= BATCH_FILES:
            await self.flush_small()

    async def flush_small(self) -> None:
        if self.batch:
            batch, self.batch, self.batch_bytes = self.batch, [], 0
            await self.start(_write_batch(batch))


class _Part:
    """One file part on its way to disk: hashed, kept in memory while small, then streamed."""

    def __init__(self, upload: ReceivedFile, unpacker: Unpacker | None) -> None:
        self.upload = upload
        self.unpacker = unpacker
        self.unpacking: StreamedUnpack | None = None
        self.digest: Any = hashlib.sha256()
        self.head = b""  # the first bytes, until there are HEAD of them
        self.chunks: list[bytes] = []
        self.pending = 0
        self.handle: Any = None

    def take(self, chunk: bytes) -> None:
        self.upload.size += len(chunk)
        if len(self.head) < HEAD:
            self.head += chunk[:HEAD]
            if len(self.head) >= HEAD and is_archive_head(self.head, self.upload.name):
                self.upload.archive, self.digest = True, None  # its members are hashed
        if self.digest is not None:
            self.digest.update(chunk)  # in the loop that writes it: no second read
        self.chunks.append(chunk)
        self.pending += len(chunk)

    async def pass_on(self, writer: _Writer) -> None:
        """What has gathered goes on: to the unpacker, once the head says it is an archive
        one can unpack as it arrives; else to the part's file, past SMALL_PART."""
        if self.unpacking is None and self.unpacker is not None and self.upload.archive:
            kind = stream_kind(self.head, self.upload.name)
            if kind is not None:
                self.unpacking = StreamedUnpack(self.unpacker, self.upload, kind)
        if self.unpacking is not None:
            chunks, self.chunks, self.pending = self.chunks, [], 0
            await self.unpacking.put(chunks)
        elif self.pending >= WRITE_SIZE or (self.handle is None and
                                            self.upload.size > SMALL_PART):
            await self.stream(writer)

    async def stream(self, writer: _Writer) -> None:
        """Past SMALL_PART the part gets its own file; write what has gathered."""
        if self.handle is None:
            self.handle = await aiofiles.open(self.upload.path, "wb")
        chunks, self.chunks, self.pending = self.chunks, [], 0
        await writer.start(self.handle.writelines(chunks))

    async def finish(self, writer: _Writer, budget: _RequestBudget) -> None:
        upload = self.upload
        if self.unpacking is not None:
            await self.unpacking.put(self.chunks)
            unpacking, self.unpacking, self.chunks = self.unpacking, None, []
            upload.unpacked = await unpacking.finish()
            return
        upload.archive = upload.archive or is_archive_head(self.head, upload.name)
        if upload.archive:
            self.digest = None
        upload.sha256 = self.digest.hexdigest() if self.digest is not None else None
        if self.handle is None:  # small: batched with others, and kept for the check
            data = b"".join(self.chunks)
            if not upload.archive and budget.keep(len(data)):
                upload.data = data
            await writer.add_small(upload.path, data)
            return
        await self.stream(writer)
        await self.close(writer)

    async def close(self, writer: _Writer) -> None:
        if self.unpacking is not None:
            unpacking, self.unpacking = self.unpacking, None
            await unpacking.abandon()
        if self.handle is not None:
            await writer.wait()
            handle, self.handle = self.handle, None
            await handle.close()


def _disposition(part: BodyPartReader) -> tuple[str | None, str | None]:
    """The part's name and filename, as aiohttp's `part.name` and `part.filename` give them."""
    header = part.headers.get(hdrs.CONTENT_DISPOSITION, "")
    simple = _SIMPLE_DISPOSITION.fullmatch(header)
    if simple is not None:
        return simple.group(1), simple.group(2)
    return part.name, part.filename


async def _save_part(part: BodyPartReader, upload: ReceivedFile, writer: _Writer,
                     budget: _RequestBudget, unpacker: Unpacker | None) -> None:
    sink = _Part(upload, unpacker)
    try:
        while chunk := await part.read_chunk(CHUNK):
            budget.add(len(chunk), upload.size + len(chunk), upload.name)
            sink.take(chunk)
            await sink.pass_on(writer)
        await sink.finish(writer, budget)
    finally:
        await sink.close(writer)


async def _read_text(part: BodyPartReader, name: str | None) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(MAX_TEXT_FIELD + 1):
        data += chunk
        if len(data) > MAX_TEXT_FIELD:
            raise Invalid(f"form field {name!r} is longer than {MAX_TEXT_FIELD} bytes",
                          field=name)
    return data.decode("utf-8", errors="replace")


async def _multipart(request: web.Request, settings: Settings) -> MultipartReader:
    if request.content_length and request.content_length > settings.max_request_bytes:
        raise TooLarge(f"request is larger than {settings.max_request_bytes} bytes")
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("expected a multipart/form-data body")
    return await request.multipart()


def _field_rule(file_fields: tuple[str, ...], labels: bool) -> str:
    rule = f"file parts named {' or '.join(map(repr, file_fields))}, each with a filename"
    if labels:
        rule += ", and text parts 'label', each labelling the file parts after it"
    return rule


async def _read_parts(reader: MultipartReader, temp_dir: Path, received: Received,
                      file_fields: tuple[str, ...], labels: bool, writer: _Writer,
                      budget: _RequestBudget, unpacker: Unpacker | None) -> None:
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart bodies are not accepted")
        name, filename = _disposition(part)
        if name in file_fields and filename is None:
            raise BadRequest(f"part {name!r} has no filename: send it as a file "
                             f"(curl -F '{name}=@path'); expected "
                             f"{_field_rule(file_fields, labels)}", field=name)
        if name in file_fields:
            upload = ReceivedFile(temp_dir / f"part-{len(received.files):06d}",
                                  filename or "upload", received.label, name or "")
            received.files.append(upload)
            await _save_part(part, upload, writer, budget, unpacker)
        elif labels and name == "label" and filename is None:
            received.label = await _read_text(part, name) or None
            received.label_unused = True
            continue
        else:
            raise BadRequest(f"unexpected form field {name!r}; expected "
                             f"{_field_rule(file_fields, labels)}", field=name)
        received.label_unused = False
    if received.label_unused:
        raise BadRequest(f"the label part {received.label!r} is not followed by any file part: "
                         f"a label applies to the file parts after it, so send it first",
                         field="label")


async def receive_files(request: web.Request, settings: Settings, temp_dir: Path,
                        file_field: str | tuple[str, ...], labels: bool = False,
                        unpacker: Unpacker | None = None) -> Received:
    """Stream every file part named `file_field` (or any of them) to disk, each into a file
    of its own (its `field` says which part name it came in); with
    `labels`, each `label` text part labels the file parts after it. With `unpacker`, an
    archive part is not written: its bytes go to `unpacker` in a thread as they arrive (see
    service.ingest.unpacking), and what it returns is the part's `unpacked`."""
    received = Received()
    writer = _Writer()
    try:
        reader = await _multipart(request, settings)
        fields = (file_field,) if isinstance(file_field, str) else file_field
        await _read_parts(reader, temp_dir, received, fields, labels, writer,
                          _RequestBudget(settings), unpacker)
        await writer.flush_small()
    except UnpackFailed as failed:
        raise failed.error from None
    except (ValueError, BadHttpMessage) as error:  # aiohttp's word for a broken body
        raise BadRequest(f"the multipart body is malformed: {error}") from None
    finally:
        await writer.wait()  # the caller removes the folder: no write may still be going
    if not received.files:
        names = (file_field,) if isinstance(file_field, str) else file_field
        raise BadRequest(f"no file parts named {' or '.join(map(repr, names))} in the request")
    return received
