"""A remote worker's code versions, fetched from the API once per host and checked by content.

A run whose experiment pins a code version needs that tree on this host. The worker asks the API
for it (a tar stream), unpacks it into a staging folder, hashes every file and renames the folder
into place as `<data dir>/code/<version>/` only if the tree's version (service.execution.codetree)
is the one asked for: a tree in the cache is always the version its name says. Threads needing
the same version wait for the one that fetches it.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from actors.stores.base import CodeUnusable
from service.execution.codetree import hash_tree, tree_version
from service.storage import code_in, extract_plain, plain_member_problem

FetchCode = Callable[[str], Iterator[IO[bytes]]]


class CodeCache:
    def __init__(self, code_dir: Path, fetch_code: FetchCode) -> None:
        self.code_dir = code_dir
        self.fetch_code = fetch_code
        self.locks: dict[str, threading.Lock] = {}
        self.locks_lock = threading.Lock()
        self.fetched = 0  # versions downloaded by this process (tests read it)

    def tree(self, version: str) -> Path:
        final = code_in(self.code_dir, version)
        if final.is_dir():
            return final
        with self._lock(version):
            if not final.is_dir():  # another thread may have fetched it while we waited
                self._fetch(version, final)
        return final

    def _lock(self, version: str) -> threading.Lock:
        with self.locks_lock:
            return self.locks.setdefault(version, threading.Lock())

    def _fetch(self, version: str, final: Path) -> None:
        staging = self.code_dir / f".{version}-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            for stream in self.fetch_code(version):
                _unpack(stream, staging)
            found = tree_version(hash_tree(staging))
            if found != version:
                raise CodeUnusable(f"code version {version} arrived as another tree (its files "
                                   f"hash to {found}); nothing was kept")
            try:
                os.rename(staging, final)
            except OSError:
                if not final.is_dir():  # else another worker process on this host placed it
                    raise
            with self.locks_lock:
                self.fetched += 1
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _unpack(stream: IO[bytes], staging: Path) -> None:
    """The tar's folders and plain files under `staging`; anything else is not a code tree."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            problem = plain_member_problem(member)
            if problem:
                raise CodeUnusable(f"the code sent holds {member.name!r}, which is not a file "
                                   f"of a tree ({problem})")
            extract_plain(tar, member, staging)
