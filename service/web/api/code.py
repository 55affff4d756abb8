"""A model's code versions: upload, list, show, download as a tar."""

from __future__ import annotations

import asyncio
import dataclasses
import re

from aiohttp import web

from service.code.tree import ARCHIVE_FIELD, FILES_FIELD
from service.code.versions import add_code, code_version_json, model_version, model_versions
from service.core.errors import Forbidden, Invalid
from service.core.lookup import get_model
from service.ingest.receive import receive_files
from service.storage import code_in, kept_temp_dir, tree_tar
from service.web.api.common import answer, in_db, path_id, refuse_unknown_query, settings_of

UPLOADS_OFF = ("code uploads are turned off on this deployment (SWEEPLAB_CODE_UPLOADS=off): "
               "its models train only the scripts installed on it")


def _file_name(model_name: str) -> str:
    """The model's name as a file name any browser keeps: other characters become `_`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("._") or "model"


async def upload(request: web.Request) -> web.Response:
    """Multipart: one `archive` part, or `files` parts named by their relative paths."""
    settings = settings_of(request)
    if not settings.code_uploads:
        raise Forbidden(UPLOADS_OFF)
    model_id = path_id(request)
    await in_db(request, get_model, model_id)
    # the request's limits are the code upload's: every part, and the request, within them
    limits = dataclasses.replace(settings, max_request_bytes=settings.code_max_bytes,
                                 max_file_bytes=settings.code_max_bytes)
    with kept_temp_dir(settings, "code") as temp_dir:
        received = await receive_files(request, limits, temp_dir, (ARCHIVE_FIELD, FILES_FIELD))
        row, created = await in_db(request, add_code, settings, model_id, received, temp_dir)
    return answer(code_version_json(row), status=201 if created else 200)


async def list_all(request: web.Request) -> web.Response:
    return answer({"versions": await in_db(request, model_versions, path_id(request))})


async def show(request: web.Request) -> web.StreamResponse:
    refuse_unknown_query(request, "download")
    download = request.query.get("download")
    if download not in (None, "1", "true"):
        raise Invalid("download must be 1 or true (or left out for the JSON)", field="download")
    row = await in_db(request, model_version, path_id(request), request.match_info["version"])
    if download is None:
        return answer(code_version_json(row))
    model = await in_db(request, get_model, row.model_id)
    root = code_in(settings_of(request).code_dir, row.version)
    response = web.StreamResponse(headers={
        "Content-Type": "application/x-tar",
        "Content-Disposition": f'attachment; filename="{_file_name(model.name)}-'
                               f'{row.version[:12]}.tar"'})
    await response.prepare(request)
    chunks = tree_tar(root, [file["path"] for file in row.files])
    loop = asyncio.get_running_loop()
    while (chunk := await loop.run_in_executor(None, next, chunks, None)) is not None:
        await response.write(chunk)
    await response.write_eof()
    return response
