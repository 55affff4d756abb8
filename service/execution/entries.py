"""Which script runs, with which interpreter: a code version's entry point (in its tree, with
its environment's python when it names a requirements file) or the deployment's script.

One place for training (on any worker) and predictions (on the API's host)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

from service.execution.command import Entry
from service.execution.environments import environment_python
from service.execution.views import build_view
from service.settings import Settings


def code_entry(settings: Settings, tree: Path, code: dict[str, Any],
               which: Literal["train", "test"]) -> Entry:
    """The entry point `which` of the code version `code` laid out at `tree`, with its
    environment built if it needs one (EnvironmentFailed when that cannot be). The entry point
    must be named by the version (a test entry point may not be: check before)."""
    script = tree / code[which]
    requirements = code.get("requirements")
    if not requirements:
        return Entry(settings.python, script, tree)
    python = environment_python(
        settings.envs_dir, tree / requirements, settings.python, settings.env_build_timeout_s,
        functools.partial(build_view, settings, tree))
    return Entry(str(python), script, tree)

