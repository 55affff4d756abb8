"""A tar archive read from its chunks as they arrive, with tarfile's stream mode."""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from typing import Any

CHUNK = 1 << 20
GZIP_WBITS = zlib.MAX_WBITS | 16  # zlib's name for a gzip header and trailer


def tar_stream(chunks: Iterable[bytes], gzipped: bool) -> tarfile.TarFile:
    """A tar archive's members in order (a .tar.gz inflated here; another tar's compression,
    if any, found by tarfile)."""
    if gzipped:
        return tarfile.open(fileobj=io.BufferedReader(ChunkReader(gunzipped(chunks)), CHUNK),
                            mode="r|")
    return tarfile.open(fileobj=io.BufferedReader(ChunkReader(chunks), CHUNK), mode="r|*")


def gunzipped(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """gzip's members inflated, each held to its trailer (CRC and size). tarfile's stream mode
    does not check it, and so took a .tar.gz cut between two tar members for a whole one."""
    inflate = zlib.decompressobj(GZIP_WBITS)
    for chunk in chunks:
        pending = chunk
        while pending:
            if inflate.eof:  # another gzip member follows (zero padding is not one)
                pending = pending.lstrip(b"\0")
                inflate = zlib.decompressobj(GZIP_WBITS) if pending else inflate
                continue
            inflated = inflate.decompress(pending, CHUNK)  # at most CHUNK: no gzip bomb
            if inflated:
                yield inflated
            pending = inflate.unused_data if inflate.eof else inflate.unconsumed_tail
    if not inflate.eof:
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")


class ChunkReader(io.RawIOBase):
    """A file that reads an iterator of chunks, for tarfile's stream mode."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.left:
            self.left = memoryview(next(self.chunks, b""))
        count = min(len(buffer), len(self.left))
        buffer[:count] = self.left[:count]
        self.left = self.left[count:]
        return count
