"""A script's version: what names it without reading it (its key), and its content's hash,
which a run records as the script that produced it (reuse matches on it)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

ScriptKey = tuple[str, int, int]  # path, mtime_ns, size: a changed script is a new one
_digests: dict[ScriptKey, str] = {}
_digests_lock = threading.Lock()


def script_key(script: Path) -> ScriptKey | None:
    """What names a script's version without reading it; None if it is gone."""
    try:
        stat = script.stat()
    except OSError:
        return None
    return str(script), stat.st_mtime_ns, stat.st_size


def script_sha256(path: Path) -> str | None:
    """The SHA-256 of a script's bytes (cached while its size and mtime stay); None if gone."""
    key = script_key(path)
    if key is None:
        return None
    with _digests_lock:
        if key in _digests:
            return _digests[key]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with _digests_lock:
        _digests[key] = digest
    return digest
