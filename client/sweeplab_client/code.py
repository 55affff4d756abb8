"""A model's code pushed from a folder, and predictions sent in batches of the server's size."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeplab_client.operations import path_of
from sweeplab_client.session import Session

if TYPE_CHECKING:
    from sweeplab_client.client import Client

SKIPPED = {".git", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache"}


def code_files(folder: Path) -> list[Path]:
    """The folder's files, without version control, caches and virtual environments."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and not SKIPPED & set(path.relative_to(folder).parts)
                  and path.suffix != ".pyc")


def push(session: Session, model_id: int, folder: Path) -> dict[str, Any]:
    """Upload the folder as the model's code: one `files` part per file, named by its path."""
    with ExitStack() as stack:
        parts = [("files", (path.relative_to(folder).as_posix(),
                            stack.enter_context(path.open("rb")), "application/octet-stream"))
                 for path in code_files(folder)]
        if not parts:
            raise FileNotFoundError(f"{folder} holds no files")
        return session.json("POST", path_of("upload_code", id=model_id), files=parts)


def predict_batches(client: Client, model_id: int, images: list[str],
                    limit: int) -> list[dict[str, Any]]:
    """The answers for `images` in the order given, `limit` images per request."""
    answers: list[dict[str, Any]] = []
    for start in range(0, len(images), limit):
        batch = [Path(image) for image in images[start:start + limit]]
        with ExitStack() as stack:
            parts = [("image", (path.name, stack.enter_context(path.open("rb")),
                                "application/octet-stream")) for path in batch]
            answer = client.call("predict", {"id": model_id}, files=parts)
        answers += answer["predictions"] if "predictions" in answer else [answer]
    return answers
