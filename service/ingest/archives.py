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
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO

from service.ingest.labels import LabelError, check_label
from service.ingest.tarstream import tar_stream
from service.ingest.zipstream import LOCAL_HEADER, ZipStream, ZipStreamError, decoded_name
from service.storage import outside_problem

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
NESTED_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
CHUNK = 1 << 20
KEEP_BYTES = 4 << 20  # a member no larger is read whole, checked, then written
PENDING_WRITES = 4


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


def _member_problem(name: str, seen: set[str], tree: bool) -> str | None:
    outside = outside_problem(name)
    if outside:
        return outside
    if name in seen:
        return "duplicate name in the archive"
    if not tree and name.lower().endswith(NESTED_SUFFIXES):
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


Chunks = Iterator[bytes]
Entry = tuple[str, str | None, Chunks | None]  # name, why it is refused (or None), its bytes
SPECIAL = "links and special files are refused"


def _take(source: Chunks, target: Path, budget: _Budget) -> tuple[str, bytes | None]:
    """Read a member, hashing it on the way; its digest, and its bytes if small (not written
    yet: the check comes first); a larger one is streamed to `target` as it is read."""
    size = 0
    digest = hashlib.sha256()
    blocks: list[bytes] = []
    out: IO[bytes] | None = None
    try:
        for block in source:
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


def _drain(source: Chunks, budget: _Budget) -> None:
    """A refused member's bytes, read past (a stream has no index to skip by) and counted."""
    size = 0
    for block in source:
        size += len(block)
        budget.add(len(block), size)


def _write(target: Path, data: bytes) -> None:
    with open(target, "wb") as out:
        out.write(data)


class _Writes:
    """Small members' files, written by a thread of their own in order while the unpacking
    reads, hashes and checks the next member: creating a file and copying into the page cache
    were a third of an archive's unpacking. At most PENDING_WRITES members wait (in memory)."""

    def __init__(self) -> None:
        self.pool: ThreadPoolExecutor | None = None
        self.pending: deque[Future[None]] = deque()

    def write(self, target: Path, data: bytes) -> None:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="member-writes")
        while len(self.pending) >= PENDING_WRITES:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(_write, target, data))

    def finish(self, quietly: bool = False) -> None:
        """Wait for every write; the first one's error, unless `quietly`."""
        try:
            while self.pending:
                try:
                    self.pending.popleft().result()
                except OSError:
                    if not quietly:
                        raise
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
                self.pool = None


def _blocks(stream: IO[bytes]) -> Chunks:
    return iter(lambda: stream.read(CHUNK), b"")


class _Source:
    """An archive's members, from a file on disk or from chunks as they arrive."""

    def __init__(self, path: Path | None = None, chunks: Iterable[bytes] | None = None,
                 kind: str | None = None) -> None:
        self.path, self.chunks, self.kind = path, chunks, kind
        self.zip_stream: ZipStream | None = None

    def entries(self, budget: _Budget) -> Iterator[Entry]:
        if self.chunks is not None and self.kind == "zip":
            self.zip_stream = ZipStream(self.chunks)
            return _zip_stream_entries(self.zip_stream, budget)
        if self.chunks is not None:
            return _tar_entries(tar_stream(self.chunks, gzipped=self.kind == "tar.gz"))
        assert self.path is not None
        # tar first: is_zipfile finds the index of a zip stored whole inside a plain tar (a
        # tar's own header at its start is never a zip's)
        if tarfile.is_tarfile(self.path):
            return _tar_entries(tarfile.open(self.path, mode="r:*"))
        if zipfile.is_zipfile(self.path):
            return _zip_entries(self.path)
        raise ArchiveError("not a readable .zip or .tar.gz archive")

    def special_names(self) -> set[str]:
        """Members only the archive's index, read at its end, shows to be links."""
        return self.zip_stream.special_names() if self.zip_stream is not None else set()


def _zip_entries(path: Path) -> Iterator[Entry]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.flag_bits & 0x1:  # zipfile would raise RuntimeError asking for a password
                raise ArchiveError("encrypted members are not accepted")
            if info.is_dir():
                continue
            mode = info.external_attr >> 16
            if mode and (mode & 0o170000) not in (0, 0o100000):
                yield info.filename, SPECIAL, None
                continue
            with archive.open(info) as stream:
                yield info.filename, None, _blocks(stream)


def _zip_stream_entries(stream: ZipStream, budget: _Budget) -> Iterator[Entry]:
    for raw_name, chunks in stream.members():
        name = decoded_name(raw_name)
        if name.endswith("/"):  # a folder: nothing to unpack, but what it holds is read past
            _drain(chunks, budget)  # and counted, as a bomb could hide there
            continue
        yield name, None, chunks


def _tar_entries(archive: tarfile.TarFile) -> Iterator[Entry]:
    with archive:
        for info in archive:  # streams member by member, never loads the index whole
            if info.isdir():
                continue
            if not info.isreg():
                yield info.name, SPECIAL, None
                continue
            stream = archive.extractfile(info)
            yield info.name, None, _blocks(stream) if stream is not None else None


def stream_kind(head: bytes, original_name: str) -> str | None:
    """How an archive that starts with `head` is unpacked while it arrives: "zip" (its first
    member's header), "tar.gz" (gzip), "tar" (by its name); None: written first, then read
    from the file (a zip with something before its first member, a self-extracting one say)."""
    if head.startswith(LOCAL_HEADER):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    lowered = original_name.lower()
    if lowered.endswith((".tar", ".tgz", ".tar.gz")) and not head.startswith(b"PK"):
        return "tar"
    return None


def _discard(folder: Path, writes: _Writes) -> None:
    """The archive is refused whole (or the unpacking failed): nothing of it stays."""
    writes.finish(quietly=True)  # no write may land after the folder is emptied
    for written in folder.iterdir():  # the folder is this archive's own: nothing is kept
        written.unlink()


def unpack(path: Path, into: Path, limits: ArchiveLimits, default_label: str | None,
           visit: Callable[[Member], bool] | None = None, tree: bool = False
           ) -> tuple[list[Member], list[Rejection]]:
    """Unpack the archive file's regular files into `into` as numbered files. `visit` sees
    each member as soon as it is read (with its bytes, when small) and says whether its file is
    wanted: a small member it refuses is never written. A `tree` (a model's code) has no
    labels, and an archive inside it is a file like any other."""
    return _unpack_source(_Source(path=path), into, limits, default_label, visit, tree)


def unpack_stream(chunks: Iterable[bytes], kind: str, into: Path, limits: ArchiveLimits,
                  default_label: str | None, visit: Callable[[Member], bool] | None = None
                  ) -> tuple[list[Member], list[Rejection]]:
    """`unpack` for an archive read from its chunks as they arrive (`kind` by `stream_kind`).
    A member the zip's index, read last, shows to be a link is refused then: its file removed,
    and left out of the members (a caller that kept it from `visit` must drop it too)."""
    return _unpack_source(_Source(chunks=chunks, kind=kind), into, limits, default_label, visit)


def _unpack_source(source: _Source, into: Path, limits: ArchiveLimits,
                   default_label: str | None, visit: Callable[[Member], bool] | None,
                   tree: bool = False) -> tuple[list[Member], list[Rejection]]:
    writes = _Writes()
    try:
        members, rejected = _unpack_entries(source, into, limits, default_label, visit, writes,
                                            tree)
        writes.finish()
        return _without_special(members, rejected, source.special_names()), rejected
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as error:
        _discard(into, writes)
        raise ArchiveError(f"damaged archive: {error}") from None
    except ZipStreamError as error:
        _discard(into, writes)
        raise ArchiveError(str(error)) from None
    except BaseException:
        _discard(into, writes)
        raise


def _unpack_entries(source: _Source, into: Path, limits: ArchiveLimits,
                    default_label: str | None, visit: Callable[[Member], bool] | None,
                    writes: _Writes, tree: bool) -> tuple[list[Member], list[Rejection]]:
    budget = _Budget(limits)
    members: list[Member] = []
    rejected: list[Rejection] = []
    seen: set[str] = set()
    for name, problem, chunks in source.entries(budget):
        budget.count_member()
        problem = problem or _member_problem(name, seen, tree)
        seen.add(name)
        try:
            label = None if problem or tree else _label_of(name, default_label)
        except LabelError as error:
            problem = f"bad label folder: {error}"
        if problem or chunks is None:
            rejected.append(Rejection(name, problem or "unreadable member"))
            _drain(chunks or iter(()), budget)
            continue
        members.append(_unpack_member(chunks, into / f"member-{budget.members:06d}", name,
                                      label, budget, visit, writes))
    return members, rejected


def _without_special(members: list[Member], rejected: list[Rejection],
                     special: set[str]) -> list[Member]:
    kept = []
    for member in members:
        if member.name in special:
            member.path.unlink(missing_ok=True)
            rejected.append(Rejection(member.name, SPECIAL))
        else:
            kept.append(member)
    return kept


def _unpack_member(chunks: Chunks, target: Path, name: str, label: str | None,
                   budget: _Budget, visit: Callable[[Member], bool] | None,
                   writes: _Writes) -> Member:
    """One member: read and hashed, checked from memory by `visit`, then written if wanted
    (by the writes' thread, while this one goes on to the next member)."""
    sha256, data = _take(chunks, target, budget)
    member = Member(target, name, label, sha256)
    wanted = visit(replace(member, data=data)) if visit is not None else True
    if data is not None and wanted:
        writes.write(target, data)
    return member
