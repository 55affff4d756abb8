"""The worker's context: its settings and its store, made once when the worker starts
(actors/__init__.py) and read by the actors as they run. One object, set in one place; a test
sets its own with `use_context`."""

from __future__ import annotations

from dataclasses import dataclass

from actors.stores.base import RunStore
from service.settings import Settings


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    store: RunStore


_context: WorkerContext | None = None


def use_context(context: WorkerContext) -> None:
    global _context  # the one piece of worker state: the actors are module functions
    _context = context


def worker_context() -> WorkerContext:
    if _context is None:
        raise RuntimeError("the worker context is not set: the actors run inside "
                           "`dramatiq actors`, which sets it as the package is imported")
    return _context
