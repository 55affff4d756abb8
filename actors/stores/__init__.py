"""Where a worker gets its runs and images and leaves its results: one interface (base), the
database on the API's host (local) or the API's worker routes from anywhere (rest, with its
per-host image cache). The factory picks one; the actor never knows which."""

from __future__ import annotations

from collections.abc import Callable

from actors.stores.base import RunStore
from service.settings import Settings


def make_store(settings: Settings,
               on_refused: Callable[[str], None] = lambda problem: None) -> RunStore:
    """The API's worker routes for a remote worker, the database for a local one.
    `on_refused(problem)`: told each time the API refuses the remote worker itself."""
    if settings.remote:
        from actors.stores.rest import RestStore  # requests is only needed there

        return RestStore(settings, on_refused)
    from actors.stores.local import LocalStore  # the database is only opened there

    return LocalStore(settings)
