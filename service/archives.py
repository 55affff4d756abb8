"""Unpacking uploaded `.zip` and `.tar.gz` archives safely, member by member.

Member names never become paths: each member is written to a numbered file in the upload's own
temporary folder; its name only gives its label (the folder it sits in, `7/img001.png` -> `7`).
Links, devices, absolute paths, `..`, duplicate names and nested archives are refused with a
reason; an archive past the member or byte limits (a zip bomb) is refused whole.

Each member is hashed in the loop that reads it, and a caller may check each member as soon as
it is read, its bytes still in memory, before it is written: one pass over the unpacked bytes
(it was three: unpack, Pillow, hash), and a member that is no image is never written.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO

from service.labels import LabelError, check_label

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
NESTED_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
CHUNK = 1 << 20
KEEP_BYTES = 4 << 20  # a member no larger is read whole, checked, then written


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int
    max_total_bytes: int
    max_file_bytes: int


@dataclass(frozen=True)
class Member:
    path: Path
    name: str
    label: str | None
    sha256: str | None = None  # of the unpacked bytes
    data: bytes | None = None  # the bytes, only while `visit` looks at a small member


@dataclass(frozen=True)
class Rejection:
    name: str
    reason: str


class ArchiveError(ValueError):
    """The whole archive is refused; the message says why."""


class ArchiveTooLarge(ArchiveError):
    """Past a limit (members, bytes): the whole request is refused with 413."""


def is_archive_head(head: bytes, original_name: str) -> bool:
    """By its name, or by its first bytes (zip or gzip magic)."""
    if original_name.lower().endswith(ARCHIVE_SUFFIXES):
        return True
    return head.startswith(b"PK\x03\x04") or head.startswith(b"\x1f\x8b")


def _member_problem(name: str, seen: set[str]) -> str | None:
    path = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        return "absolute path"
    if ".." in path.parts:
        return "path leaves the archive (..)"
    if name in seen:
        return "duplicate name in the archive"
    if name.lower().endswith(NESTED_SUFFIXES):
        return "nested archives are not unpacked"
    return None


def _label_of(name: str, default: str | None) -> str | None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return check_label(parts[-2]) if len(parts) >= 2 else default


class _Budget:
    """Counts the bytes actually unpacked: headers can lie, so sizes are never trusted."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.total = 0
        self.members = 0

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise ArchiveTooLarge(f"more than {self.limits.max_members} members")

    def add(self, size: int, member_size: int) -> None:
        self.total += size
        if member_size > self.limits.max_file_bytes:
            raise ArchiveTooLarge(f"a member unpacks to more than "
                                  f"{self.limits.max_file_bytes} bytes")
        if self.total > self.limits.max_total_bytes:
            raise ArchiveTooLarge(f"unpacks to more than {self.limits.max_total_bytes} "
                                  f"bytes (zip bomb guard)")


def _take(source: IO[bytes], target: Path, budget: _Budget) -> tuple[str, bytes | None]:
    """Read a member, hashing it on the way; its digest, and its bytes if small (not written
    yet: the check comes first); a larger one is streamed to `target` as it is read."""
    size = 0
    digest = hashlib.sha256()
    blocks: list[bytes] = []
    out: IO[bytes] | None = None
    try:
        while block := source.read(CHUNK):
            size += len(block)
            budget.add(len(block), size)
            digest.update(block)
            blocks.append(block)
            if size > KEEP_BYTES:
                out = out or open(target, "wb")  # noqa: SIM115 (closed below)
                out.writelines(blocks)
                blocks.clear()
    finally:
        if out is not None:
            out.close()
    if out is not None:
        return digest.hexdigest(), None
    return digest.hexdigest(), blocks[0] if len(blocks) == 1 else b"".join(blocks)


def _write(target: Path, data: bytes) -> None:
    with open(target, "wb") as out:
        out.write(data)


def _zip_entries(path: Path) -> Iterator[tuple[str, str | None, IO[bytes] | None]]:
    """(name, why it is not a regular file or None, its stream) for each zip member."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            mode = info.external_attr >> 16
            if mode and (mode & 0o170000) not in (0, 0o100000):
                yield info.filename, "links and special files are refused", None
                continue
            with archive.open(info) as stream:
                yield info.filename, None, stream


def _tar_entries(path: Path) -> Iterator[tuple[str, str | None, IO[bytes] | None]]:
    with tarfile.open(path, mode="r:*") as archive:
        for info in archive:  # streams member by member, never loads the index whole
            if info.isdir():
                continue
            if not info.isreg():
                yield info.name, "links and special files are refused", None
                continue
            stream = archive.extractfile(info)
            yield info.name, None, stream


def _entries(path: Path) -> Iterator[tuple[str, str | None, IO[bytes] | None]]:
    if zipfile.is_zipfile(path):
        return _zip_entries(path)
    if tarfile.is_tarfile(path):
        return _tar_entries(path)
    raise ArchiveError("not a readable .zip or .tar.gz archive")


def _discard(folder: Path) -> None:
    for written in folder.iterdir():  # the folder is this archive's own: nothing is kept
        written.unlink()


def unpack(path: Path, into: Path, limits: ArchiveLimits, default_label: str | None,
           visit: Callable[[Member], bool] | None = None
           ) -> tuple[list[Member], list[Rejection]]:
    """Unpack the archive's regular files into `into` as numbered files. `visit` sees each
    member as soon as it is read (with its bytes, when small) and says whether its file is
    wanted: a small member it refuses is never written."""
    budget = _Budget(limits)
    members: list[Member] = []
    rejected: list[Rejection] = []
    seen: set[str] = set()
    try:
        for name, problem, stream in _entries(path):
            budget.count_member()
            problem = problem or _member_problem(name, seen)
            seen.add(name)
            try:
                label = None if problem else _label_of(name, default_label)
            except LabelError as error:
                problem = f"bad label folder: {error}"
            if problem or stream is None:
                rejected.append(Rejection(name, problem or "unreadable member"))
                continue
            member = _unpack_member(stream, into / f"member-{budget.members:06d}", name,
                                    label, budget, visit)
            members.append(member)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        _discard(into)
        raise ArchiveError(f"damaged archive: {error}") from None
    except ArchiveError:
        _discard(into)
        raise
    return members, rejected


def _unpack_member(stream: IO[bytes], target: Path, name: str, label: str | None,
                   budget: _Budget, visit: Callable[[Member], bool] | None) -> Member:
    """One member: read and hashed, checked from memory by `visit`, then written if wanted.
    (A writer thread overlapping the next member's read measured no faster on 2 busy cores:
    the copy into the page cache and the check both need the CPU.)"""
    sha256, data = _take(stream, target, budget)
    member = Member(target, name, label, sha256)
    wanted = visit(replace(member, data=data)) if visit is not None else True
    if data is not None and wanted:
        _write(target, data)
    return member
