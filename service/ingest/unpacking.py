"""An archive part unpacked in a thread while the event loop is still receiving it.

The archive is never written whole: its bytes go from the request to the unpacker, which writes
only its members. The loop receives (and parses the multipart body) on one core while the
thread hashes, checks and writes members on the other. At most FEED_BYTES wait between the two,
so a slow disk holds the request back instead of filling memory.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

FEED_BYTES = 8 << 20

# (the part's upload, its kind by archives.stream_kind, its chunks) -> what the part unpacked to
Unpacker = Callable[[Any, str, "ChunkFeed"], Any]


class UnpackFailed(Exception):  # noqa: N818 (a carrier, not an error of its own)
    """What the unpacker raised (a limit, a bad label), carried past the multipart parsing's
    own handling of ValueError, which would call it a malformed body."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class ChunkFeed:
    """Chunks from the event loop to one thread, in order; the loop waits while more than
    FEED_BYTES wait, and nothing waits once the thread has stopped taking them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = FEED_BYTES) -> None:
        self.loop, self.limit = loop, limit
        self.chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.waiting = 0  # bytes put and not yet taken
        self.taking = True
        self.room = asyncio.Event()
        self.room.set()

    async def put(self, chunk: bytes) -> None:
        with self.lock:
            if not self.taking:
                return  # the unpacker has finished or failed: the rest is not wanted
            self.waiting += len(chunk)
            self.chunks.put(chunk)
            if self.waiting > self.limit:
                self.room.clear()
        await self.room.wait()

    def close(self) -> None:
        self.chunks.put(None)

    def __iter__(self) -> Iterator[bytes]:
        """The thread's side: each chunk as it comes, until the loop closes the feed."""
        while (chunk := self.chunks.get()) is not None:
            with self.lock:
                self.waiting -= len(chunk)
                if self.waiting <= self.limit // 2 and not self.room.is_set():
                    self.loop.call_soon_threadsafe(self.room.set)
            yield chunk

    def stop_taking(self) -> None:
        """The thread is done with the feed: the loop's puts drop their chunks from now on."""
        with self.lock:
            self.taking = False
        self.loop.call_soon_threadsafe(self.room.set)


class StreamedUnpack:
    """One archive part's unpacking, started once its first bytes say it is an archive."""

    def __init__(self, unpacker: Unpacker, upload: Any, kind: str) -> None:
        loop = asyncio.get_running_loop()
        self.feed = ChunkFeed(loop)
        # A thread of its own for as long as the part takes to arrive (a slow client's: many
        # seconds), not one of the default pool's few, which aiofiles' writes and /health's
        # broker probe need meanwhile.
        pool = ThreadPoolExecutor(1, thread_name_prefix="unpack")
        self.job = loop.run_in_executor(pool, self._run, unpacker, upload, kind)
        pool.shutdown(wait=False)  # the job runs on; its thread ends with it

    def _run(self, unpacker: Unpacker, upload: Any, kind: str) -> Any:
        try:
            return unpacker(upload, kind, self.feed)
        finally:
            self.feed.stop_taking()

    async def put(self, chunks: list[bytes]) -> None:
        """Hand the chunks over; a failure that ends the whole request (a limit) is raised
        now rather than after the rest of the part has arrived."""
        if self.job.done() and (error := self.job.exception()) is not None:
            raise UnpackFailed(error)
        for chunk in chunks:
            await self.feed.put(chunk)

    async def finish(self) -> Any:
        """Once the part has arrived: what it unpacked to."""
        self.feed.close()
        try:
            return await self.job
        except Exception as error:
            raise UnpackFailed(error) from error

    async def abandon(self) -> None:
        """The request failed: end the thread before the caller removes its folder."""
        self.feed.close()
        with suppress(Exception):
            await self.job
