"""Image uploads: received (service.ingest.receive), then checked, stored once, and recorded.

Nothing is kept until the whole request has been read and checked: a request cut off half-way
leaves only its temporary folder, which is removed (and cleared at start after a crash).
Every file is proved an image from the bytes and hash its receiving or unpacking left behind:
no file is read back only to be hashed, and small files are not read back at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.core.db import insert_in_batches, write_transaction
from service.core.errors import TooLarge
from service.core.tables import Image, ModelImage
from service.ingest.archives import (
    ARCHIVE_SUFFIXES,
    NESTED_SUFFIXES,
    ArchiveError,
    ArchiveLimits,
    ArchiveTooLarge,
    Member,
    Rejection,
    unpack,
    unpack_stream,
)
from service.ingest.imagecheck import CheckedImage, NotAnImage, check_image
from service.ingest.labels import check_label
from service.ingest.receive import Received, ReceivedFile, receive_files
from service.ingest.unpacking import Unpacker
from service.settings import Settings
from service.storage import store_image

__all__ = ["Candidate", "Received", "ReceivedFile", "Recorded", "check_uploads",
           "receive_files", "record_images", "unpacker"]

IN_BATCH = 500


@dataclass
class Candidate:
    image: CheckedImage
    name: str
    label: str | None


def _limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(settings.max_archive_members, settings.max_archive_bytes,
                         settings.max_file_bytes)


def _check(settings: Settings, path: Path, name: str, label: str | None,
           out: list[Candidate], rejected: list[Rejection], data: bytes | None = None,
           sha256: str | None = None) -> bool:
    """Whether the file is an image: a candidate, or a rejection (and its file removed)."""
    try:
        image = check_image(path, settings.max_image_pixels, data, sha256)
    except NotAnImage as error:
        rejected.append(Rejection(name, _unsupported_archive(name) or str(error)))
        path.unlink(missing_ok=True)  # a small member refused is never written at all
        return False
    out.append(Candidate(image, name, label))
    return True


def _unsupported_archive(name: str) -> str | None:
    """A clearer reason than "not an image" for an archive of a kind we do not unpack."""
    if not name.lower().endswith(NESTED_SUFFIXES):
        return None
    return (f"archives of this kind are not accepted; send images, or a "
            f"{', '.join(ARCHIVE_SUFFIXES)} archive of them")


Unpacked = tuple[list[Candidate], list[Rejection]]


def _unpack_one(settings: Settings, upload: ReceivedFile, label: str | None, temp_dir: Path,
                chunks: Iterable[bytes] | None = None, kind: str | None = None) -> Unpacked:
    """The archive's images, each checked as soon as it is read (its bytes still in memory,
    written only if it is an image); its refusals: the unpacking's first, then the checks'.
    From its file, or from `chunks` as they arrive (`kind` by archives.stream_kind)."""
    folder = temp_dir / f"{upload.path.name}-unpacked"
    folder.mkdir()
    prefix = f"{upload.name}:"
    found: list[Candidate] = []
    refused: list[Rejection] = []
    refused_paths: list[Path] = []  # the member file of each of `refused`

    def visit(member: Member) -> bool:
        wanted = _check(settings, member.path, prefix + member.name, member.label, found,
                        refused, member.data, member.sha256)
        if not wanted:
            refused_paths.append(member.path)
        return wanted

    try:
        if chunks is not None and kind is not None:
            kept, rejected = unpack_stream(chunks, kind, folder, _limits(settings), label, visit)
        else:
            kept, rejected = unpack(upload.path, folder, _limits(settings), label, visit)
    except ArchiveTooLarge as error:  # a limit: the whole request is refused, nothing kept
        raise TooLarge(f"archive {upload.name!r}: {error}") from None
    except ArchiveError as error:  # refused whole: the images checked so far go with it
        return [], [Rejection(upload.name, f"archive refused: {error}")]
    # What the unpacking refused after `visit` saw it (a link, by a zip's index read last)
    # has the unpacking's reason only, whatever `visit` made of its bytes.
    paths = {member.path for member in kept}
    found = [candidate for candidate in found if candidate.image.path in paths]
    refused = [rejection for rejection, path in zip(refused, refused_paths, strict=True)
               if path in paths]
    return found, [Rejection(prefix + r.name, r.reason) for r in rejected] + refused


def unpacker(settings: Settings, temp_dir: Path) -> Unpacker:
    """For receive_files: an archive part unpacked and checked in a thread as it arrives."""

    def unpack_part(upload: ReceivedFile, kind: str, chunks: Iterable[bytes]) -> Unpacked:
        label = check_label(upload.label) if upload.label is not None else None
        return _unpack_one(settings, upload, label, temp_dir, chunks, kind)

    return unpack_part


def check_uploads(settings: Settings, received: Received,
                  temp_dir: Path) -> tuple[list[Candidate], list[Rejection]]:
    """Unpack archives and prove every file an image. Runs in a thread: Pillow blocks."""
    candidates: list[Candidate] = []
    rejected: list[Rejection] = []
    for upload in received.files:
        label = check_label(upload.label) if upload.label is not None else None
        if upload.unpacked is not None:
            found, refusals = upload.unpacked
            candidates += found
            rejected += refusals
        elif upload.archive:
            found, refusals = _unpack_one(settings, upload, label, temp_dir)
            candidates += found
            rejected += refusals
        else:
            _check(settings, upload.path, upload.name, label, candidates, rejected,
                   upload.data, upload.sha256)
            upload.data = None  # checked: its memory goes back
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
    """Store the files, then add the rows in one transaction, then make sure the files are
    still there: an image no model used, collected between the two, is stored again (the
    collector never takes an image a committed row uses)."""
    _store_all(settings, candidates)  # files first: a crash here leaves no row without its file
    recorded = _record_rows(model_id, candidates)
    _store_all(settings, candidates)
    return recorded


def _store_all(settings: Settings, candidates: list[Candidate]) -> None:
    for candidate in candidates:
        store_image(settings, candidate.image.path, candidate.image.sha256,
                    candidate.image.extension)


def _record_rows(model_id: int, candidates: list[Candidate]) -> Recorded:
    with write_transaction():
        known = _labels_in_model(model_id, [c.image.sha256 for c in candidates])
        fresh, conflicts = _split_fresh(candidates, known)
        rows = [_image_row(c.image) for c in fresh.values()]
        insert_in_batches(Image, rows, IN_BATCH, ignore_conflicts=True)
        links = [{"model": model_id, "image": sha, "label": c.label,
                  "original_name": c.name[-255:]} for sha, c in fresh.items()]
        insert_in_batches(ModelImage, links, IN_BATCH)
    return Recorded(len(fresh), len(candidates) - len(fresh), conflicts)
