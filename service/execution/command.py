"""What a script is started with, and what its failure says: its argv, its environment and the
last lines of its errors. One place for training, cold and warm predictions."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.execution.supervise import RUN_MARKER
from service.settings import Settings

# the tokens, and the URLs that may hold the broker's and the database's passwords
SECRET_SETTINGS = ("SWEEPLAB_API_TOKEN", "SWEEPLAB_WORKER_TOKEN", "SWEEPLAB_BROKER_URL",
                   "SWEEPLAB_DATABASE_URL")
ERROR_LINES = 5


def script_env(run_id: int) -> dict[str, str]:
    """The worker's (or the API's) environment, less secrets, with the run the script trains
    or whose model it predicts with (SWEEPLAB_RUN_ID, also how its processes are found)."""
    env = {name: value for name, value in os.environ.items() if name not in SECRET_SETTINGS}
    env[RUN_MARKER] = str(run_id)
    env["PYTHONUNBUFFERED"] = "1"  # so a run's log can be followed while it runs
    return env


def scalar_text(value: Any) -> str:
    """A parameter's value as its JSON scalar: `0.001`, `4`, `true`; a string as itself."""
    return value if isinstance(value, str) else json.dumps(value)


def params_argv(params: Mapping[str, Any]) -> list[str]:
    """`--NAME VALUE` for each parameter, in the grid's order: two words each, never through
    a shell (the assignment's `--i LR --j LAYERS --k STEPS`)."""
    return [word for name, value in params.items() for word in (f"--{name}", scalar_text(value))]


def params_env(params: Mapping[str, Any]) -> dict[str, str]:
    """SWEEPLAB_PARAMS: the parameters as one JSON object, for scripts that prefer it."""
    return {"SWEEPLAB_PARAMS": json.dumps(params)}


@dataclass(frozen=True)
class Entry:
    """A script and how to run it: its interpreter (a code version's environment's, or the
    deployment's) and the code tree it belongs to, whose root its imports start from."""

    python: str
    script: Path
    tree: Path | None = None  # None: the deployment's script, run as it always was

    def env(self) -> dict[str, str]:
        """PYTHONPATH with the tree's root first, so `import nets.resnet` finds the tree's."""
        if self.tree is None:
            return {}
        inherited = os.environ.get("PYTHONPATH")
        return {"PYTHONPATH": os.pathsep.join(filter(None, (str(self.tree), inherited)))}


def deployment_train(settings: Settings) -> Entry:
    return Entry(settings.python, settings.train_script)


def deployment_test(settings: Settings) -> Entry:
    return Entry(settings.python, settings.test_script)


def train_argv(entry: Entry, params: Mapping[str, Any], images: Path) -> list[str]:
    return [entry.python, str(entry.script), *params_argv(params), "--images", str(images)]


def test_argv(entry: Entry, params: Mapping[str, Any], image: Path) -> list[str]:
    return [entry.python, str(entry.script), *params_argv(params), "--image", str(image)]


def serve_argv(entry: Entry, params: Mapping[str, Any]) -> list[str]:
    return [entry.python, str(entry.script), "--serve", *params_argv(params)]


def last_lines(text: str, count: int = ERROR_LINES) -> str:
    """The last lines of what a script printed, for the reason it failed."""
    return "\n".join(text.strip().splitlines()[-count:])
