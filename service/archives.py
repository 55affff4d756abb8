"""Unpacking uploaded `.zip` and `.tar.gz` archives safely, member by member.

Member names never become paths: each member is written to a numbered file in the upload's own
temporary folder; its name only gives its label (the folder it sits in, `7/img001.png` -> `7`).
Links, devices, absolute paths, `..`, duplicate names and nested archives are refused with a
reason; an archive past the member or byte limits (a zip bomb) is refused whole.
"""

from __future__ import annotations

import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from service.labels import LabelError, check_label

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
NESTED_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
CHUNK = 1 << 20


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


@dataclass(frozen=True)
class Rejection:
    name: str
    reason: str


class ArchiveError(ValueError):
    """The whole archive is refused; the message says why."""


class ArchiveTooLarge(ArchiveError):
    """Past a limit (members, bytes): the whole request is refused with 413."""


def is_archive(path: Path, original_name: str) -> bool:
    if original_name.lower().endswith(ARCHIVE_SUFFIXES):
        return True
    with open(path, "rb") as handle:
        magic = handle.read(4)
    return magic.startswith(b"PK\x03\x04") or magic.startswith(b"\x1f\x8b")


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

    def copy(self, source: IO[bytes], target: Path) -> None:
        written = 0
        with open(target, "wb") as out:
            while block := source.read(CHUNK):
                written += len(block)
                self.total += len(block)
                if written > self.limits.max_file_bytes:
                    raise ArchiveTooLarge(f"a member unpacks to more than "
                                       f"{self.limits.max_file_bytes} bytes")
                if self.total > self.limits.max_total_bytes:
                    raise ArchiveTooLarge(f"unpacks to more than {self.limits.max_total_bytes} "
                                       f"bytes (zip bomb guard)")
                out.write(block)


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


def unpack(path: Path, into: Path, limits: ArchiveLimits,
           default_label: str | None) -> tuple[list[Member], list[Rejection]]:
    """Unpack the archive's regular files into `into` as numbered files."""
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
            target = into / f"member-{budget.members:06d}"
            budget.copy(stream, target)
            members.append(Member(target, name, label))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        _discard(into)
        raise ArchiveError(f"damaged archive: {error}") from None
    except ArchiveError:
        _discard(into)
        raise
    return members, rejected
