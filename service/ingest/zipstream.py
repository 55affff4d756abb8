"""Reading a zip archive while it arrives, and holding it to its own index.

stream-unzip reads the members from their local headers, in the order they come, so an upload's
archive is unpacked while the request is still being received, never written whole to disk.
Tools that list or unpack a zip (`unzip -l`, Python's zipfile, the user's file manager) read its
central directory instead, at the end. The two can disagree in a hostile or broken archive, and
only the directory says which members are links. So the directory's bytes are kept as they pass
(only they: recording stops while a member is read) and, at the end, must name the same members
in the same order; a member it marks as a link or special file is refused as the file reader
refuses it. `ZipStream.special_names` says which members those are once the whole archive is
read.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

from stream_unzip import (
    MissingPasswordError,
    NotStreamUnzippable,
    TruncatedDataError,
    UnsupportedCompressionTypeError,
    UnzipError,
    stream_unzip,
)

LOCAL_HEADER = b"PK\x03\x04"
DESCRIPTOR = b"PK\x07\x08"
_LOCAL_ENTRY = struct.Struct("<4s5H3I2H")  # a local file header, 30 bytes
_DIRECTORY_ENTRY = struct.Struct("<4s6H3I5H2I")  # a central directory file header, 46 bytes
_END = struct.Struct("<4s4H2IH")  # end of central directory record, 22 bytes
_END64 = struct.Struct("<4sQ2H2I4Q")  # zip64 end of central directory record, 56 bytes
_END64_LOCATOR = 20
RECENT_BYTES = 64  # more than a zip64 data descriptor with its signature (24) and a signature (4)
MAX_INDEX_BYTES = 64 << 20  # more than the member limit's directory would ever need
_LINK_TYPES = (0o120000, 0o020000, 0o060000, 0o010000, 0o140000)  # link, devices, fifo, socket


class ZipStreamError(ValueError):
    """The archive cannot be read or does not agree with its own index; the message says why."""


@dataclass(frozen=True)
class IndexEntry:
    raw_name: bytes
    special: bool  # a link, device, pipe or socket by its Unix mode


def decoded_name(raw: bytes) -> str:
    """Member names as UTF-8 when they are (what today's tools write, flagged or not), else
    as the zip format's historical code page 437."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp437")


class _Recorder:
    """The archive's raw chunks, passed through; kept only between members, where the central
    directory (and the next member's header) lies."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.source = iter(chunks)
        self.recent: deque[bytes] = deque()  # the last RECENT_BYTES or more, read ahead of us
        self.recent_bytes = 0
        self.kept: list[bytes] | None = []  # from the start: the first member's header
        self.kept_bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.source:
            self._remember(chunk)
            if self.kept is not None:
                self.kept.append(chunk)
                self.kept_bytes += len(chunk)
                if self.kept_bytes > MAX_INDEX_BYTES:
                    raise ZipStreamError(f"its index is larger than {MAX_INDEX_BYTES} bytes")
            yield chunk

    def _remember(self, chunk: bytes) -> None:
        """Keep the newest chunk and RECENT_BYTES before it: the reader may be anywhere in the
        newest one, having read up to a data descriptor and a signature past a member's end."""
        self.recent.append(chunk)
        self.recent_bytes += len(chunk)
        while self.recent_bytes - len(self.recent[0]) - len(chunk) >= RECENT_BYTES:
            self.recent_bytes -= len(self.recent.popleft())

    def member_started(self) -> None:
        self.kept, self.kept_bytes = None, 0

    def member_ended(self) -> None:
        """From here to the next member. The reader has read ahead of the member's end by at
        most its data descriptor and the next signature: the recent chunks hold that."""
        self.kept, self.kept_bytes = list(self.recent), self.recent_bytes

    def tail(self) -> bytes:
        return b"".join(self.kept or [])

    def held_at_least(self, size: int) -> bytes:
        """The kept bytes, with more taken from the source until there are `size` (or no
        more): a look past what the reader took, once it has stopped."""
        while self.kept is not None and self.kept_bytes < size:
            chunk = next(self.source, None)
            if chunk is None:
                break
            self.kept.append(chunk)
            self.kept_bytes += len(chunk)
        return self.tail()


def _reason(error: UnzipError) -> str:
    if isinstance(error, NotStreamUnzippable):
        return ("a member is stored uncompressed with its size written only after its data, "
                "so it cannot be unpacked as it arrives; make the archive with compression "
                "(zip -r) or send a .tar.gz")
    if isinstance(error, MissingPasswordError):
        return "encrypted members are not accepted"
    if isinstance(error, UnsupportedCompressionTypeError):
        return f"compression method {error.args[0] if error.args else '?'} is not supported"
    if isinstance(error, TruncatedDataError):
        return "damaged archive: it ends before its last member or index"
    return f"damaged archive: {type(error).__name__}"


def _translated(unpacked: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from unpacked
    except UnzipError as error:  # a member's CRC or size is wrong, or its data is cut
        raise ZipStreamError(_reason(error)) from None


class ZipStream:
    """One zip archive read from its chunks: its members, then what its index says of them."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.recorder = _Recorder(chunks)
        self.names: list[bytes] = []  # every member read, directories included, in order

    def members(self) -> Iterator[tuple[bytes, Iterator[bytes]]]:
        """(raw name, its unpacked chunks) of each member; each member's chunks must be read
        to their end before the next member comes."""
        while True:
            try:
                yield from self._read_on()
                return
            except NotStreamUnzippable as stuck:
                name = stuck.args[0] if stuck.args else b""
                self._step_over_empty(name)
                self.names.append(name)
                yield name, iter(())

    def _read_on(self) -> Iterator[tuple[bytes, Iterator[bytes]]]:
        try:
            for raw_name, _size, unpacked in stream_unzip(self.recorder, chunk_size=1 << 20):
                self.recorder.member_started()
                self.names.append(raw_name)
                yield raw_name, _translated(unpacked)
                self.recorder.member_ended()
        except NotStreamUnzippable:
            raise
        except UnzipError as error:
            raise ZipStreamError(_reason(error)) from None

    def _step_over_empty(self, name: bytes) -> None:
        """stream-unzip stops at a stored member whose sizes come after its data: it cannot
        tell where the data ends. Folders and empty files are such members in zips written to
        a pipe, or by macOS's Finder: their data descriptor, all zeros, follows the header at
        once. Step over one of those and read on with a new reader; refuse any other."""
        data_at = _stuck_member_data(self.recorder.tail(), name)
        end = None
        if data_at is not None:
            held = self.recorder.held_at_least(data_at + 24 + 2)
            end = _empty_descriptor_end(held, data_at)
        if end is None:
            raise ZipStreamError(_reason(NotStreamUnzippable(name)))
        self.recorder = _Recorder(chain([held[end:]], self.recorder.source))

    def special_names(self) -> set[str]:
        """Once every member is read: the names the index marks as links or special files;
        ZipStreamError if the index names other members than the archive holds."""
        index = read_index(self.recorder)
        special = check_against_index(self.names, index)
        return {decoded_name(name) for name, is_special in zip(self.names, special, strict=True)
                if is_special}


def _stuck_member_data(held: bytes, name: bytes) -> int | None:
    """Where the data of the stored, sized-after-its-data member `name` starts (after its
    local header, name and extra field)."""
    at = held.find(LOCAL_HEADER)
    while 0 <= at <= len(held) - _LOCAL_ENTRY.size:
        fields = _LOCAL_ENTRY.unpack_from(held, at)
        flags, method, compressed_size = fields[2], fields[3], fields[7]
        name_length, extra_length = fields[9], fields[10]
        name_at = at + _LOCAL_ENTRY.size
        if (flags & 0x08 and method == 0 and compressed_size == 0
                and held[name_at:name_at + name_length] == name):
            return name_at + name_length + extra_length
        at = held.find(LOCAL_HEADER, at + 1)
    return None


def _empty_descriptor_end(held: bytes, data_at: int) -> int | None:
    """Where an empty member's data descriptor (no data before it) ends, if one is there: with
    its signature (zip32 or zip64 sizes) or without, all zeros, and a signature after it."""
    for signature, length in ((DESCRIPTOR, 16), (DESCRIPTOR, 24), (b"", 12)):
        descriptor = held[data_at:data_at + length]
        zeros = descriptor[len(signature):]
        if (len(descriptor) == length and descriptor.startswith(signature)
                and zeros == bytes(len(zeros))
                and held[data_at + length:data_at + length + 2] == b"PK"):
            return data_at + length
    return None


def _end_record(tail: bytes) -> tuple[int, int]:
    """(where the central directory starts in `tail`, its entry count), from its end record."""
    at = tail.rfind(b"PK\x05\x06", max(0, len(tail) - (_END.size + 0xFFFF)))
    if at < 0 or at + _END.size > len(tail):
        raise ZipStreamError("damaged archive: no end of central directory")
    _, _, _, _, count, size, _, _ = _END.unpack_from(tail, at)
    end = at
    locator = at - _END64_LOCATOR
    if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        end64 = tail.rfind(b"PK\x06\x06", 0, locator)
        if end64 < 0:
            raise ZipStreamError("damaged archive: no zip64 end of central directory")
        fields = _END64.unpack_from(tail, end64)
        count, size, end = fields[7], fields[8], end64
    start = end - size
    if start < 0:
        raise ZipStreamError("damaged archive: its index does not fit before its end record")
    return start, count


def read_index(recorder: _Recorder) -> list[IndexEntry]:
    """The central directory's entries, read from the bytes kept after the last member."""
    tail = recorder.tail()
    at, count = _end_record(tail)
    entries = []
    for _ in range(count):
        if tail[at:at + 4] != b"PK\x01\x02" or at + _DIRECTORY_ENTRY.size > len(tail):
            raise ZipStreamError("damaged archive: its index is cut short")
        fields = _DIRECTORY_ENTRY.unpack_from(tail, at)
        name_length, extra_length, comment_length = fields[10], fields[11], fields[12]
        external = fields[15]
        start = at + _DIRECTORY_ENTRY.size
        raw_name = tail[start:start + name_length]
        mode = external >> 16
        entries.append(IndexEntry(raw_name, (mode & 0o170000) in _LINK_TYPES))
        at = start + name_length + extra_length + comment_length
    return entries


def check_against_index(read: list[bytes], index: list[IndexEntry]) -> list[bool]:
    """Whether each member read is a link or special file by the index; ZipStreamError when the
    index names other members than the archive holds (an archive that reads two ways)."""
    if len(read) != len(index):
        raise ZipStreamError(f"its index lists {len(index)} members but it holds {len(read)}")
    for position, (name, entry) in enumerate(zip(read, index, strict=True)):
        if name != entry.raw_name:
            raise ZipStreamError(f"its index names member {position + 1} "
                                 f"{decoded_name(entry.raw_name)!r}, but it holds "
                                 f"{decoded_name(name)!r}")
    return [entry.special for entry in index]
