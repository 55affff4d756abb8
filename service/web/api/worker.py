"""The worker routes, `/api/v1/worker/...`: what a remote worker does, over HTTP.

They exist only when `SWEEPLAB_WORKER_TOKEN` is set, and accept only that token (the
middleware sees to it). Thin: parse, call one function of service.workers.remote, answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re
import stat
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import aiofiles
import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from service.contract import Outcome, RunStatus
from service.core.errors import BadRequest, Invalid, TooLarge
from service.storage import image_path, kept_temp_dir
from service.web.api.common import (
    MAX_JSON_BYTES,
    answer,
    in_db,
    json_object,
    path_id,
    read_json,
    settings_of,
)
from service.workers.remote import (
    LOG_NAMES,
    check_attempt,
    claim_for,
    code_files,
    fail_oversized,
    finish_for,
    heartbeat_for,
    keep_folder,
    keep_folder_and_finish,
    manifest,
    requeue_for,
)

CHUNK = 1 << 20
SMALL_FOLDER = 1 << 20  # a run folder (as a tar) no larger is unpacked from memory
TAR_GROUP_BYTES = 4 << 20  # a big image alone may exceed it: it is still sent whole
MAX_IMAGES_PER_FETCH = 1000
RESULT_FIELDS = ("attempt", "worker", "status", "accuracy", "value", "exit_code", "error",
                 "duration_s", "script_sha256")
SHA256 = re.compile(r"[0-9a-f]{64}")


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Invalid(f"{name} must be a whole number >= 0", field=name)
    return value


def _text(body: dict[str, Any], name: str, limit: int = 255) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise Invalid(f"{name} must be a string of 1 to {limit} characters", field=name)
    return value


async def claim(request: web.Request) -> web.Response:
    body = await read_json(request, ("worker",))
    return answer(await in_db(request, claim_for, settings_of(request), path_id(request),
                              _text(body, "worker")))


def _logs(body: dict[str, Any]) -> dict[str, tuple[int, bytes]]:
    raw = body.get("logs", {})
    if not isinstance(raw, dict) or set(raw) - set(LOG_NAMES):
        raise Invalid("logs must map stdout/stderr to {offset, data}", field="logs")
    logs = {}
    for stream, chunk in raw.items():
        if not isinstance(chunk, dict) or not isinstance(chunk.get("data"), str):
            raise Invalid(f"logs.{stream} must be {{offset, data}}", field=f"logs.{stream}")
        try:
            data = base64.b64decode(chunk["data"], validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"logs.{stream}.data is not base64", field=f"logs.{stream}") from None
        logs[stream] = (_int(chunk, "offset"), data)
    return logs


async def renew(request: web.Request) -> web.Response:
    body = await read_json(request, ("attempt", "logs"))
    return answer(await in_db(request, heartbeat_for, settings_of(request), path_id(request),
                              _int(body, "attempt"), _logs(body)))


def _outcome(body: dict[str, Any]) -> Outcome:
    status = body.get("status")
    if status not in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        raise Invalid("status must be succeeded or failed", field="status")
    accuracy, duration, objective = body.get("accuracy"), body.get("duration_s"), body.get(
        "value")
    for name, value in (("accuracy", accuracy), ("duration_s", duration), ("value", objective)):
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)
                                  or not math.isfinite(value)):
            raise Invalid(f"{name} must be a finite number or null", field=name)
    if status == RunStatus.SUCCEEDED and objective is None:
        raise Invalid("a succeeded run needs its objective's value", field="value")
    exit_code, error = body.get("exit_code"), body.get("error")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
        raise Invalid("exit_code must be a whole number or null", field="exit_code")
    if error is not None and (not isinstance(error, str) or len(error) > 20_000):
        raise Invalid("error must be a string of at most 20000 characters or null",
                      field="error")
    script = body.get("script_sha256")
    if script is not None and (not isinstance(script, str) or not SHA256.fullmatch(script)):
        raise Invalid("script_sha256 must be 64 lowercase hex digits or null",
                      field="script_sha256")
    return Outcome(RunStatus(status), accuracy=accuracy, value=objective, exit_code=exit_code,
                   error=error, duration_s=duration, script_sha256=script)


async def result(request: web.Request) -> web.Response:
    """The outcome as JSON, its folder sent before (`PUT …/folder`); or, in one multipart
    request, an `outcome` JSON part and then a `folder` tar part: a round trip less a run."""
    if request.content_type.startswith("multipart/"):
        return await _result_with_folder(request)
    body = await read_json(request, RESULT_FIELDS)
    recorded = await in_db(request, finish_for, settings_of(request), path_id(request),
                           _int(body, "attempt"), _text(body, "worker"), _outcome(body))
    return answer({"recorded": recorded})


async def _next_part(reader: aiohttp.MultipartReader, name: str) -> aiohttp.BodyPartReader:
    part = await reader.next()
    if not isinstance(part, aiohttp.BodyPartReader) or part.name != name:
        raise BadRequest(f"expected the parts 'outcome' (JSON) and then 'folder' (a tar "
                         f"stream); part {name!r} is missing or out of order", field=name)
    return part


async def _result_with_folder(request: web.Request) -> web.Response:
    settings, run_id = settings_of(request), path_id(request)
    try:
        reader = await request.multipart()
        raw = await _read_up_to((await _next_part(reader, "outcome")).read_chunk,
                                MAX_JSON_BYTES + 1)
        if len(raw) > MAX_JSON_BYTES:
            raise TooLarge(f"the outcome part is larger than {MAX_JSON_BYTES} bytes")
        body = json_object(raw, RESULT_FIELDS)
        attempt, worker, outcome = _int(body, "attempt"), _text(body, "worker"), _outcome(body)
        part = await _next_part(reader, "folder")
        small = min(SMALL_FOLDER, settings.max_run_folder_bytes)
        head = await _read_up_to(part.read_chunk, small + 1)
        if len(head) <= small:  # the whole folder, in memory: one hop to a thread in all
            recorded = await in_db(request, keep_folder_and_finish, settings, run_id,
                                   attempt, worker, outcome, head)
            return answer({"recorded": recorded})
        await in_db(request, check_attempt, run_id, attempt)  # before reading the rest
        with kept_temp_dir(settings, "folder") as temp_dir:
            archive = await _folder_within_limit(request, part.read_chunk, temp_dir, attempt,
                                                 worker, head)
            recorded = await in_db(request, keep_folder_and_finish, settings, run_id,
                                   attempt, worker, outcome, archive)
    except (ValueError, BadHttpMessage) as error:  # aiohttp's word for a broken body
        raise BadRequest(f"the multipart body is malformed: {error}") from None
    return answer({"recorded": recorded})


async def requeue(request: web.Request) -> web.Response:
    body = await read_json(request, ("attempt", "worker"))
    moved = await in_db(request, requeue_for, path_id(request), _int(body, "attempt"),
                        _text(body, "worker"))
    return answer({"requeued": moved})


def _query_attempt(request: web.Request) -> int:
    raw = request.query.get("attempt", "")
    if not raw.isascii() or not raw.isdigit():
        raise Invalid("the attempt query parameter must be a whole number", field="attempt")
    return int(raw)


async def folder(request: web.Request) -> web.Response:
    """Receive the run folder as a tar stream, then put it in place of `runs/<id>/`."""
    settings, run_id = settings_of(request), path_id(request)
    attempt, worker = _query_attempt(request), request.query.get("worker", "worker")
    await in_db(request, check_attempt, run_id, attempt)
    if request.content_length is not None and \
            request.content_length > settings.max_run_folder_bytes:
        await _fail_oversized(request, attempt, worker)
    with kept_temp_dir(settings, "folder") as temp_dir:
        archive = await _folder_within_limit(request, request.content.read, temp_dir, attempt,
                                             worker)
        await in_db(request, keep_folder, settings, run_id, attempt, archive)
    return web.Response(status=204)


async def _read_up_to(read: Callable[[int], Awaitable[bytes]], size: int) -> bytes:
    """The first `size` bytes of a stream, or all of it if it is shorter."""
    data = bytearray()
    while len(data) < size and (chunk := await read(size - len(data))):
        data += chunk
    return bytes(data)


async def _folder_within_limit(request: web.Request, read: Callable[[int], Awaitable[bytes]],
                               temp_dir: Path, attempt: int, worker: str,
                               head: bytes = b"") -> Path:
    """Stream a run folder's tar (after its `head`, read already) to a file; past the limit
    the run fails saying why (413)."""
    archive = temp_dir / "folder.tar"
    limit, written = settings_of(request).max_run_folder_bytes, 0
    async with aiofiles.open(archive, "wb") as out:
        while chunk := (head or await read(CHUNK)):
            head = b""
            written += len(chunk)
            if written > limit:
                await _fail_oversized(request, attempt, worker)
            await out.write(chunk)
    return archive


async def _fail_oversized(request: web.Request, attempt: int, worker: str) -> NoReturn:
    limit = settings_of(request).max_run_folder_bytes
    await in_db(request, fail_oversized, path_id(request), attempt, worker, limit)
    raise TooLarge(f"run folder larger than {limit} bytes (SWEEPLAB_MAX_RUN_FOLDER_BYTES); "
                   f"the run is failed with that reason")


async def experiment_manifest(request: web.Request) -> web.Response:
    images = await in_db(request, manifest, settings_of(request), path_id(request))
    return answer({"images": images})


def _wanted(body: dict[str, Any]) -> list[tuple[str, str]]:
    wanted = body.get("images")
    if not isinstance(wanted, list) or len(wanted) > MAX_IMAGES_PER_FETCH:
        raise Invalid(f"images must be a list of at most {MAX_IMAGES_PER_FETCH} "
                      f"{{sha256, extension}}", field="images")
    pairs = []
    for item in wanted:
        sha, ext = (item.get("sha256"), item.get("extension")) if isinstance(item, dict) else (
            None, None)
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef"
                                                                  for c in sha)):
            raise Invalid("each image needs a sha256 of 64 hex digits", field="images")
        if not (isinstance(ext, str) and ext.isascii() and ext.isalnum() and len(ext) <= 10):
            raise Invalid("each image needs its extension", field="images")
        pairs.append((sha, ext))
    return pairs


async def images(request: web.Request) -> web.StreamResponse:
    """The asked-for images as one uncompressed tar stream, `<sha256>.<ext>` each."""
    settings = settings_of(request)
    pairs = _wanted(await read_json(request, ("images",)))
    paths = [image_path(settings, sha, ext) for sha, ext in pairs]
    loop = asyncio.get_running_loop()
    # Up to MAX_IMAGES_PER_FETCH files to look at: in a thread, or every request would wait
    groups = await loop.run_in_executor(None, _groups, paths)
    response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await response.prepare(request)
    for group in groups:
        if len(group) == 1 and group[0][1] > TAR_GROUP_BYTES:
            await _stream_member(response, *group[0])  # a big image never sits in memory
            continue
        # one thread hop reads a group of small files: one per file cost more than the bytes
        members = [path for path, _ in group]
        await response.write(await loop.run_in_executor(None, _tar_members, members))
    await response.write(tarfile.NUL * tarfile.BLOCKSIZE * 2)
    await response.write_eof()
    return response


def _groups(paths: list[Path]) -> list[list[tuple[Path, int]]]:
    """Consecutive paths, with their sizes, of about TAR_GROUP_BYTES together (a big file goes
    alone). Blocking (a stat per file): run it in a thread. Invalid if an image is missing."""
    sizes = []
    for path in paths:
        try:
            found = path.stat()
        except FileNotFoundError:
            found = None
        if found is None or not stat.S_ISREG(found.st_mode):
            raise Invalid(f"no stored image {path.name}", field="images")
        sizes.append(found.st_size)
    groups: list[list[tuple[Path, int]]] = []
    total = 0
    for path, length in zip(paths, sizes, strict=True):
        if not groups or total + length > TAR_GROUP_BYTES:
            groups.append([])
            total = 0
        groups[-1].append((path, length))
        total += length
    return groups


async def code(request: web.Request) -> web.StreamResponse:
    """A code version's tree as one uncompressed tar stream (its files, by their paths); the
    worker checks it against the version before it uses it."""
    settings = settings_of(request)
    files = await in_db(request, code_files, settings, request.match_info["version"])
    response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await response.prepare(request)
    for name, path in files:
        await _stream_member(response, path, path.stat().st_size, name)
    await response.write(tarfile.NUL * tarfile.BLOCKSIZE * 2)
    await response.write_eof()
    return response


def _tar_members(paths: list[Path]) -> bytes:
    """Tar headers, contents and padding of each file (blocking: run it in a thread)."""
    blob = bytearray()
    for path in paths:
        data = path.read_bytes()
        info = tarfile.TarInfo(path.name)
        info.size = len(data)
        blob += info.tobuf(format=tarfile.GNU_FORMAT)
        blob += data
        blob += tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE)
    return bytes(blob)


async def _stream_member(response: web.StreamResponse, path: Path, size: int,
                         name: str | None = None) -> None:
    info = tarfile.TarInfo(name or path.name)
    info.size = size
    await response.write(info.tobuf(format=tarfile.GNU_FORMAT))
    async with aiofiles.open(path, "rb") as source:
        while chunk := await source.read(CHUNK):
            await response.write(chunk)
    await response.write(tarfile.NUL * (-info.size % tarfile.BLOCKSIZE))
