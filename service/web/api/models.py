"""Models, their images, their best run, and predictions."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from aiohttp import web

from service.catalog import create_model, delete_model, delete_model_image
from service.core.errors import Conflict, Invalid, NotFound, TooLarge
from service.core.lookup import get_model
from service.core.queries import row_by_id
from service.core.tables import Run
from service.ingest.imagecheck import NotAnImage, check_image
from service.ingest.labels import LabelError
from service.ingest.uploads import Received, check_uploads, receive_files, record_images, unpacker
from service.predict.batch import PredictImage, image_at, predict_images
from service.settings import Settings
from service.storage import kept_temp_dir
from service.web.api.common import answer, in_db, path_id, read_json, settings_of, shared_read
from service.web.keys import WARM_POOL
from service.web.views import all_models_json, best_json, label_counts, model_json

PREVIEW_BYTES = 512 * 1024
MODEL_FIELDS = ("name", "description")
MIME = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "bmp": "image/bmp",
        "tif": "image/tiff", "webp": "image/webp", "ppm": "image/x-portable-pixmap"}


def _data_url(path: Path, extension: str, size: int) -> str | None:
    if size > PREVIEW_BYTES:
        return None
    return f"data:{MIME[extension]};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _model_view(model_id: int) -> dict:
    return model_json(get_model(model_id))


async def create(request: web.Request) -> web.Response:
    body = await read_json(request, MODEL_FIELDS)
    model = await in_db(request, create_model, body)
    return answer(await in_db(request, _model_view, model.id), status=201)


async def list_all(request: web.Request) -> web.Response:
    return answer({"models": await shared_read(request, all_models_json)})


async def show(request: web.Request) -> web.Response:
    return answer(await in_db(request, _model_view, path_id(request)))


async def delete(request: web.Request) -> web.Response:
    await in_db(request, delete_model, settings_of(request), path_id(request))
    return web.Response(status=204)


async def delete_image(request: web.Request) -> web.Response:
    sha = request.match_info["sha"]
    await in_db(request, delete_model_image, settings_of(request), path_id(request), sha)
    return web.Response(status=204)


async def ingest_upload(request: web.Request, model_id: int) -> dict:
    """Stream, check and store the images of an upload request; the answer's body."""
    settings = settings_of(request)
    await in_db(request, get_model, model_id)
    with kept_temp_dir(settings, "upload") as temp_dir:
        try:  # a bad label is met by an archive unpacked as it arrives, or by the check
            received = await receive_files(request, settings, temp_dir, "images", labels=True,
                                           unpacker=unpacker(settings, temp_dir))
            candidates, rejected = await in_db(request, check_uploads, settings, received,
                                               temp_dir)
        except LabelError as error:
            raise Invalid(str(error), field="label") from None
        rejected_json = [{"name": r.name, "reason": r.reason} for r in rejected]
        if not candidates:
            raise Invalid("no image in the request could be kept",
                          extra={"rejected": rejected_json})
        recorded = await in_db(request, record_images, settings, model_id, candidates)
        image_count, labels = await in_db(request, label_counts, model_id)
    return {"added": recorded.added, "duplicates": recorded.duplicates,
            "label_conflicts": recorded.label_conflicts, "rejected": rejected_json,
            "image_count": image_count, "labels": labels}


async def upload_images(request: web.Request) -> web.Response:
    return answer(await ingest_upload(request, path_id(request)), status=201)


def _best_of(model_id: int) -> dict | None:
    return best_json(get_model(model_id).best_run_id)


async def best(request: web.Request) -> web.Response:
    model_id = path_id(request)
    found = await in_db(request, _best_of, model_id)
    if found is None:
        raise NotFound(f"model {model_id} has no succeeded run yet")
    return answer(found)


def _best_run(model_id: int) -> Run:
    model = get_model(model_id)
    run = row_by_id(Run, model.best_run_id) if model.best_run_id else None
    if run is None:
        raise Conflict(f"model {model_id} has no best run yet; run an experiment first")
    return run


def _check_predict_images(settings: Settings, received: Received, temp_dir: Path,
                          previews: bool) -> tuple[list[PredictImage], list[str | None]]:
    """Prove every part an image (blocking: run it in a thread); 422 naming the bad ones.
    With `previews`, each image as a data URL too (None past PREVIEW_BYTES)."""
    checked: list[PredictImage] = []
    shown: list[str | None] = []
    rejected: list[dict] = []
    for index, upload in enumerate(received.files):
        try:
            image = check_image(upload.path, settings.max_image_pixels)
        except NotAnImage as error:
            rejected.append({"index": index, "name": upload.name, "reason": str(error)})
            continue
        path = image.path.rename(temp_dir / f"image-{index:03d}.{image.extension}")
        checked.append(PredictImage(path, upload.name))
        shown.append(_data_url(path, image.extension, image.size_bytes) if previews else None)
    if rejected and len(received.files) == 1:
        raise Invalid(f"{rejected[0]['name']}: {rejected[0]['reason']}", field="image")
    if rejected:
        first = rejected[0]
        raise Invalid(f"{image_at(first['index'], len(received.files), first['name'])} "
                      f"is not an image: {first['reason']}", field="image",
                      extra={"rejected": rejected})
    return checked, shown


async def predict_upload(request: web.Request, model_id: int,
                         previews: bool = True) -> tuple[dict, Any]:
    """Run the test script on each uploaded `image` part. One part: its answer and, with
    `previews` (the page's), the image as a data URL (None past PREVIEW_BYTES). Several:
    `{"predictions": [...]}` in the parts' order, and a list of (file name, data URL)."""
    settings = settings_of(request)
    run = await in_db(request, _best_run, model_id)
    with kept_temp_dir(settings, "predict") as temp_dir:
        received = await receive_files(request, settings, temp_dir, "image")
        if len(received.files) > settings.max_predict_images:
            raise TooLarge(f"{len(received.files)} images in one request; at most "
                           f"{settings.max_predict_images} (SWEEPLAB_MAX_PREDICT_IMAGES)",
                           field="image")
        images, shown = await in_db(request, _check_predict_images, settings, received,
                                    temp_dir, previews)
        results = await predict_images(settings, request.app[WARM_POOL], model_id, run, images)
    if len(results) == 1:
        return results[0], shown[0]
    names = [image.name for image in images]
    return {"predictions": results}, list(zip(names, shown, strict=True))


async def predict(request: web.Request) -> web.Response:
    result, _ = await predict_upload(request, path_id(request), previews=False)
    return answer(result)
