"""A model's code versions: an uploaded tree stored once by content, a row per model.

The tree is named by `tree_version` (what a remote worker checks a fetched tree against) and
lies at `<code dir>/<version>/`. The same tree uploaded for two models lies there once; for the
same model again, its row's `uploaded_at` moves, so it is the current code again. A tree is
placed before its row is written and checked again after: model deletion collects trees no row
names (sweeps.removal.collect_unused_code), under the same lock as the row's transaction, so a
tree collected between the two is placed again from the upload's own copy.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from service.code.manifest import EntryPoints, entry_points
from service.code.tree import build_tree
from service.core.db import hold_lock, write_transaction
from service.core.errors import NotFound
from service.core.lookup import get_model
from service.core.tables import CodeVersion
from service.core.timeutil import iso, utcnow
from service.execution.codetree import TreeFile, tree_version
from service.ingest.receive import Received
from service.settings import Settings
from service.storage import code_in
from service.sweeps.removal import CODE_STORE_LOCK


def place_tree(settings: Settings, source: Path, version: str) -> Path:
    """Put the tree at `source` in the code store under `version`, unless it is there: as hard
    links, assembled beside the store's trees and renamed into place (a reader never sees half
    of one). `source` stays, so its caller can place it again."""
    target = code_in(settings.code_dir, version)
    if target.is_dir():
        return target
    settings.code_dir.mkdir(parents=True, exist_ok=True)
    staging = settings.code_dir / f".staging-{uuid.uuid4().hex}"
    try:
        shutil.copytree(source, staging, copy_function=os.link)
        os.rename(staging, target)
    except OSError:
        if not target.is_dir():  # another upload of the same tree placed it first: fine
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _record(model_id: int, version: str, files: list[TreeFile],
            entry: EntryPoints) -> tuple[CodeVersion, bool]:
    with write_transaction():
        hold_lock(CODE_STORE_LOCK)
        get_model(model_id, for_update=True)  # deleted meanwhile: 404; two uploads: in turn
        row = CodeVersion.get_or_none(CodeVersion.model == model_id,
                                      CodeVersion.version == version)
        if row is not None:
            row.uploaded_at = utcnow()
            row.save(only=[CodeVersion.uploaded_at])
            return row, False
        return CodeVersion.create(model=model_id, version=version, files=files,
                                  train=entry.train, test=entry.test,
                                  requirements=entry.requirements,
                                  defaults=entry.defaults), True


def add_code(settings: Settings, model_id: int, received: Received,
             temp_dir: Path) -> tuple[CodeVersion, bool]:
    """Check the received tree, store it, and record it as the model's current code; the row,
    and whether it is new (201) rather than uploaded again (200). Blocking: run in a thread."""
    get_model(model_id)
    root, files = build_tree(settings, received, temp_dir)
    entry = entry_points(root, {file["path"] for file in files})
    version = tree_version(files)
    place_tree(settings, root, version)  # first: a row never names a tree not yet there
    row, created = _record(model_id, version, files, entry)
    place_tree(settings, root, version)  # collected before the row was in: placed again
    return row, created


def code_version_json(row: CodeVersion) -> dict[str, Any]:
    return {"version": row.version, "files": row.files, "train": row.train,
            "test": row.test, "requirements": row.requirements, "defaults": row.defaults,
            "created_at": iso(row.created_at), "uploaded_at": iso(row.uploaded_at)}


def model_versions(model_id: int) -> list[dict[str, Any]]:
    """The model's code versions, the current (last uploaded) first."""
    get_model(model_id)
    rows = (CodeVersion.select().where(CodeVersion.model == model_id)
            .order_by(CodeVersion.uploaded_at.desc(), CodeVersion.id.desc()))
    return [code_version_json(row) for row in rows]


def model_version(model_id: int, version: str) -> CodeVersion:
    get_model(model_id)
    row = CodeVersion.get_or_none(CodeVersion.model == model_id,
                                  CodeVersion.version == version)
    if row is None:
        raise NotFound(f"model {model_id} has no code version {version}")
    return row
