"""A model's code versions as the pages show them (read from the code_version table: the
upload API writes it). The newest upload is the model's current code; an experiment pins the
version that was current when it was created."""

from __future__ import annotations

from typing import Any

from service.core.tables import CodeVersion
from service.core.timeutil import iso

SHORT = 12  # a version's first hex digits: enough to tell a model's versions apart


def code_versions(model_id: int) -> list[dict[str, Any]]:
    """The model's code versions, newest upload first, the first marked current."""
    rows = (CodeVersion.select().where(CodeVersion.model == model_id)
            .order_by(CodeVersion.uploaded_at.desc(), CodeVersion.id.desc()))
    return [{"version": row.version, "short": row.version[:SHORT],
             "files": len(row.files or []), "train": row.train, "test": row.test,
             "requirements": row.requirements, "uploaded_at": iso(row.uploaded_at),
             "current": n == 0} for n, row in enumerate(rows)]
