"""Files under the data directory: content-addressed images, experiment snapshots, temp space.

Files appear atomically (written under a temporary name, then renamed), so a crash never leaves a
half-written file where a reader would take it for a whole one.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Literal, TypedDict

from service.core.errors import Conflict
from service.settings import Settings


class ExtractOptions(TypedDict, total=False):
    """Keyword arguments of `TarFile.extractall`, as EXTRACT_FILTER holds them."""

    filter: Literal["data"]


# Python's "data" extraction filter (PEP 706), where this Python has it: 3.11.4 and newer.
# Debian 12's python3 is 3.11.2, where our own member checks are the only guard.
EXTRACT_FILTER: ExtractOptions = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
UNLABELLED_NOTE = "images without a label lie at the snapshot's top level"


def image_in(store: Path, sha256: str, extension: str) -> Path:
    """Where an image lies in a content-addressed store (the API's, or a worker's cache)."""
    return store / sha256[:2] / f"{sha256}.{extension}"


def image_path(settings: Settings, sha256: str, extension: str) -> Path:
    return image_in(settings.images_dir, sha256, extension)


def code_in(store: Path, version: str) -> Path:
    """Where a code version's tree lies in a code store (the API's, or a worker's cache)."""
    return store / version


class _Collected(io.RawIOBase):
    """What a tarfile writes, kept until it is taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]  # (takes bytes only)
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def tree_tar(root: Path, paths: Iterable[str]) -> Iterator[bytes]:
    """A tar of the files at `paths` under `root`, as chunks (about a file each), so a tree
    is sent without being written whole. Owners and times are left out: the same tree gives
    the same bytes."""
    out = _Collected()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            source = root / path
            info = tarfile.TarInfo(path)
            info.size, info.mode = source.stat().st_size, 0o644
            with source.open("rb") as stream:
                tar.addfile(info, stream)
            yield out.take()
    yield out.take()


def new_temp_dir(settings: Settings, purpose: str) -> Path:
    path = settings.tmp_dir / f"{purpose}-{uuid.uuid4().hex}"
    path.mkdir(parents=True)
    return path


@contextmanager
def kept_temp_dir(settings: Settings, purpose: str) -> Iterator[Path]:
    """A temporary folder of the data directory's, removed with what is left in it."""
    path = new_temp_dir(settings, purpose)
    try:
        yield path
    finally:
        remove_tree(path)


def clear_temp(settings: Settings) -> None:
    """Remove what interrupted uploads and predictions left (called at start, before serving)."""
    if settings.tmp_dir.is_dir():
        shutil.rmtree(settings.tmp_dir, ignore_errors=True)
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)


def store_image(settings: Settings, source: Path, sha256: str, extension: str) -> Path:
    """Put a validated temp file into the image store, as a hard link (same file system: both
    under the data dir; a link appears whole). The same bytes are stored once. The temp file
    stays, so its caller can store it again should the store's copy go meanwhile (an unused
    image collected as it was uploaded again), and removes it after."""
    target = image_path(settings, sha256, extension)
    try:
        os.link(source, target)
    except FileExistsError:
        pass
    except FileNotFoundError:  # its folder does not exist yet: made then, not tried per image
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.link(source, target)
    return target


def outside_problem(name: str) -> str | None:
    """Why a member name from an archive (an upload, a run folder, a backup) would land
    outside the folder it is unpacked into, or None: absolute (also `\\x` and `C:x`), or
    with `..`. Backslashes count as separators, as an archive made on Windows means them."""
    path = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        return "absolute path"
    if ".." in path.parts:
        return "path leaves the archive (..)"
    return None


def plain_member_problem(member: tarfile.TarInfo) -> str | None:
    """Why a tar member may not be written into a tree (a run folder a remote worker sends, a
    code version a worker fetches), or None: it must be a plain file or folder, inside."""
    problem = outside_problem(member.name)
    if problem is None and not (member.isfile() or member.isdir()):
        problem = "not a plain file or folder"
    return problem


def extract_plain(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    """Write a member `plain_member_problem` passed into the new, empty `target`.
    Not tarfile's extract: its data filter resolves every member's real path, a dozen system
    calls each (40% of a remote result's time on the API), to guard against links, and no
    link can be in `target`: the check refuses them, and nothing else is in it."""
    path = target / member.name
    if member.isdir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    with open(path, "xb") as out:  # "x": a second member of the same name is refused
        if source is not None:
            shutil.copyfileobj(source, out)


def link_or_copy(source: Path | str, target: Path | str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed: a copy costs more but works
        shutil.copy2(source, target)


@contextmanager
def staged_snapshot(settings: Settings, images: Iterable[tuple[Path, str | None]]
                    ) -> Iterator[Callable[[int], Path]]:
    """Lay out `<label>/<file>` from hard links in a staging folder, and give the function
    that renames it into place as an experiment's snapshot: the caller does that inside the
    transaction that creates the experiment, so either both exist or neither. A staging
    folder never placed is removed."""
    staging = settings.snapshots_dir / f".staging-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        for source, label in images:
            folder = staging / label if label else staging
            folder.mkdir(exist_ok=True)
            try:
                link_or_copy(source, folder / source.name)
            except FileNotFoundError:
                raise Conflict(f"image {source.stem} was deleted while the snapshot was being "
                               f"made; try again") from None

        def place(experiment_id: int) -> Path:
            final = settings.snapshots_dir / str(experiment_id)
            os.rename(staging, final)
            return final

        yield place
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once placed


def build_snapshot(settings: Settings, experiment_id: int,
                   images: Iterable[tuple[Path, str | None]]) -> Path:
    """Lay out one experiment's snapshot from hard links, then rename it into place."""
    with staged_snapshot(settings, images) as place:
        return place(experiment_id)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# A deletion's folders go in two steps. First each is renamed into a batch of the trash, inside
# the deletion's transaction: a rename is atomic, so no reader sees half a folder. The trash is
# a folder of the top folder they lie in (runs/, snapshots/), as a top folder may be a link to
# another disk and a rename cannot leave its file system; backups skip its dot name. The batch
# is `pending-<id>` until the transaction ends, then `gone-<id>` (committed: its folders are
# removed in the background) or renamed back (rolled back).
TRASH = ".trash"
PENDING, GONE = "pending-", "gone-"
_trash_lock = threading.Lock()  # a batch is not made as its empty trash folder is removed


def trash_batch(top: Path, batch: str) -> Path:
    return top / TRASH / f"{PENDING}{batch}"


def move_into_trash(top: Path, names: Iterable[str], batch: str) -> None:
    """Rename each of top's folders `names` that exists into the pending batch `batch`."""
    folder = trash_batch(top, batch)
    with _trash_lock:
        folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        with contextlib.suppress(FileNotFoundError):  # a run never started has no folder
            os.rename(top / name, folder / name)


def settle_batch(top: Path, batch: str, put_back: Callable[[str], bool]) -> None:
    """End a pending batch: rename back each folder `put_back` says, and mark the rest gone."""
    folder = trash_batch(top, batch)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if put_back(entry.name):
            os.rename(entry, top / entry.name)
    os.rename(folder, top / TRASH / f"{GONE}{batch}")


def has_trash(top: Path) -> bool:
    return (top / TRASH).is_dir()


def pending_batches(top: Path) -> list[str]:
    """The batches a deletion left pending (it crashed before its transaction ended)."""
    trash = top / TRASH
    if not trash.is_dir():
        return []
    return [entry.name.removeprefix(PENDING) for entry in trash.iterdir()
            if entry.name.startswith(PENDING)]


def remove_gone(top: Path) -> None:
    """Remove the folders of every batch marked gone."""
    trash = top / TRASH
    if trash.is_dir():
        for entry in trash.iterdir():
            if entry.name.startswith(GONE):
                remove_tree(entry)


def remove_empty_trash(top: Path) -> None:
    """Remove the trash folder itself once nothing is in it (nothing left on disk)."""
    with _trash_lock, contextlib.suppress(OSError):  # not empty (a new batch), or absent
        (top / TRASH).rmdir()
