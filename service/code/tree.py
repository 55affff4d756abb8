"""A model's code as it arrives: one archive part, or file parts named by their relative paths,
laid out as a tree in the upload's temporary folder and checked on the way.

The archive is read by service.ingest's readers (the same member checks as image archives: no
links or special files, no absolute paths, no `..`, no duplicates, the member and byte limits);
loose files' names are judged by the same `outside_problem`. A path named twice (after `./`
and `a//b` are folded), or both a file and a folder, is refused. An archive whose members all
lie in one top-level folder is unwrapped: `proj/train.py` is the tree's `train.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from service.core.errors import Invalid, TooLarge
from service.execution.codetree import TreeFile, file_sha256
from service.ingest.archives import ArchiveError, ArchiveLimits, ArchiveTooLarge, unpack
from service.ingest.labels import has_control_characters
from service.ingest.receive import Received, ReceivedFile
from service.settings import Settings
from service.storage import outside_problem

ARCHIVE_FIELD = "archive"
FILES_FIELD = "files"
MAX_PATH = 255  # CodeVersion's entry point columns hold at most this


@dataclass(frozen=True)
class Arrived:
    """One file of the tree before it is placed: its path in the tree, where its bytes lie."""

    name: str
    source: Path
    sha256: str | None


def tree_path(name: str) -> str | None:
    """A member or part name as a tree path (`/`-separated, `.` and empty parts folded), or
    None when there is nothing left of it."""
    parts = [part for part in PurePosixPath(name.replace("\\", "/")).parts if part != "/"]
    return "/".join(parts) or None


def path_problem(name: str) -> str | None:
    """Why `name` cannot be a file's path in a tree, or None."""
    outside = outside_problem(name)
    if outside:
        return outside
    if has_control_characters(name):
        return "control characters in the path"
    if tree_path(name) is None:
        return "empty path"
    if len(name.encode()) > MAX_PATH:
        return f"path longer than {MAX_PATH} bytes"
    return None


def _refuse(field: str, name: str, reason: str) -> Invalid:
    return Invalid(f"{field} {name!r}: {reason}", field=field)


def _archive_members(settings: Settings, upload: ReceivedFile, temp_dir: Path) -> list[Arrived]:
    folder = temp_dir / "unpacked"
    folder.mkdir()
    limits = ArchiveLimits(settings.code_max_files, settings.code_max_bytes,
                           settings.code_max_bytes)
    try:
        members, rejected = unpack(upload.path, folder, limits, None, tree=True)
    except ArchiveTooLarge as error:
        raise TooLarge(f"archive {upload.name!r}: {error} (SWEEPLAB_CODE_MAX_FILES, "
                       f"SWEEPLAB_CODE_MAX_BYTES)") from None
    except ArchiveError as error:
        raise Invalid(f"archive {upload.name!r}: {error}", field=ARCHIVE_FIELD) from None
    if rejected:
        first = rejected[0]
        raise _refuse(ARCHIVE_FIELD, f"{upload.name}:{first.name}", first.reason)
    return _unwrapped([Arrived(m.name, m.path, m.sha256) for m in members])


def _unwrapped(members: list[Arrived]) -> list[Arrived]:
    """Members all in one top-level folder (`proj/...`) lose that folder."""
    paths = [tree_path(member.name) or "" for member in members]
    tops = {path.split("/", 1)[0] for path in paths}
    if len(tops) != 1 or any("/" not in path for path in paths):
        return members
    return [Arrived(path.split("/", 1)[1], member.source, member.sha256)
            for path, member in zip(paths, members, strict=True)]


def _parts(received: Received) -> tuple[ReceivedFile | None, list[ReceivedFile]]:
    archives = [f for f in received.files if f.field == ARCHIVE_FIELD]
    loose = [f for f in received.files if f.field == FILES_FIELD]
    if archives and loose or len(archives) > 1:
        raise Invalid(f"send either one part named {ARCHIVE_FIELD!r} or parts named "
                      f"{FILES_FIELD!r}, not both nor several archives", field=ARCHIVE_FIELD)
    return (archives[0] if archives else None), loose


class _Tree:
    """The tree being laid out under `root`, each file checked as it is placed."""

    def __init__(self, root: Path, field: str) -> None:
        self.root, self.field = root, field
        self.files: list[TreeFile] = []
        self.folders: set[str] = set()

    def place(self, arrived: Arrived) -> None:
        problem = path_problem(arrived.name)
        if problem:
            raise _refuse(self.field, arrived.name, problem)
        path = tree_path(arrived.name)
        assert path is not None  # path_problem says "empty path" otherwise
        parents = path.split("/")[:-1]
        prefixes = {"/".join(parents[:n]) for n in range(1, len(parents) + 1)}
        taken = {file["path"] for file in self.files}
        if path in taken or path in self.folders:
            raise _refuse(self.field, arrived.name, "named twice (or both a file and a folder)")
        if prefixes & taken:
            raise _refuse(self.field, arrived.name, "lies in a folder that is also a file")
        self.folders |= prefixes
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(arrived.source, target)
        self.files.append({"path": path, "size": target.stat().st_size,
                           "sha256": arrived.sha256 or file_sha256(target)})


def build_tree(settings: Settings, received: Received,
               temp_dir: Path) -> tuple[Path, list[TreeFile]]:
    """Lay the received parts out as a tree in `temp_dir`; its root and files (sorted by
    path). Blocking: the handler runs it in a thread. 413 past the limits, 422 naming the
    file that is wrong."""
    archive, loose = _parts(received)
    if archive is not None:
        arrived, field = _archive_members(settings, archive, temp_dir), ARCHIVE_FIELD
    else:
        # %XX decoded: some clients (aiohttp's) send a filename's `/` as %2F
        arrived = [Arrived(unquote(f.name), f.path, f.sha256) for f in loose]
        field = FILES_FIELD
    if len(arrived) > settings.code_max_files:
        raise TooLarge(f"more than {settings.code_max_files} files (SWEEPLAB_CODE_MAX_FILES)")
    if not arrived:
        raise Invalid("the upload holds no files", field=field)
    tree = _Tree(temp_dir / "tree", field)
    tree.root.mkdir()
    for one in arrived:
        tree.place(one)
    return tree.root, sorted(tree.files, key=lambda file: file["path"])
