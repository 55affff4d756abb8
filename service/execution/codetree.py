"""A code version's name: the SHA-256 of its tree (every file's path and content hash).

The API names an uploaded tree with it, and a remote worker checks a fetched tree against it, so
one function serves both (stdlib only: a worker imports it without the database).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import TypedDict


class TreeFile(TypedDict):
    path: str  # relative, "/"-separated
    size: int
    sha256: str


def tree_version(files: Iterable[TreeFile]) -> str:
    """The tree's version: the SHA-256 of the lines `<sha256>  <path>\\n` sorted by path (what
    `sha256sum` prints), so the same files give the same version wherever they are hashed."""
    lines = sorted(f"{entry['sha256']}  {entry['path']}\n" for entry in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_tree(root: Path) -> list[TreeFile]:
    """Every regular file under `root`, sorted by path (links and other kinds are not files of a
    tree: the upload refuses them, so a tree holding one hashes to no uploaded version)."""
    files: list[TreeFile] = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files.append({"path": path.relative_to(root).as_posix(),
                          "size": path.stat().st_size, "sha256": file_sha256(path)})
    return sorted(files, key=lambda entry: entry["path"])
