"""Which test script a prediction runs: the best run's experiment's code version's `test` entry
point, in its tree and with its environment's python, or the deployment's test script for an
experiment without code. Blocking (a query, and maybe an environment to build): run it in a
thread."""

from __future__ import annotations

from service.core.db import database
from service.core.errors import Conflict, NotFound
from service.core.queries import row_by_id
from service.core.tables import Experiment, Run
from service.execution.command import Entry, deployment_test
from service.execution.entries import code_entry
from service.execution.environments import EnvironmentFailed
from service.runs.state import code_spec
from service.settings import Settings
from service.storage import code_in


def prediction_entry(settings: Settings, run: Run) -> Entry:
    """The script that predicts with `run`'s model; 409 when it cannot be had."""
    with database.connection_context():
        experiment = row_by_id(Experiment, run.experiment_id)
        if experiment is None:
            raise NotFound(f"experiment {run.experiment_id} does not exist")
        code = code_spec(experiment)
    if code is None:
        return deployment_test(settings)
    version = code["version"]
    if not code["test"]:
        raise Conflict(f"code version {version} has no test.py (and its sweeplab.toml names "
                       f"no test entry point): its runs cannot predict")
    tree = code_in(settings.code_dir, version)
    if not (tree / code["test"]).is_file():
        raise Conflict(f"test script not found: {code['test']} in code version {version}")
    try:
        return code_entry(settings, tree, code, "test")
    except EnvironmentFailed as failed:
        raise Conflict(failed.reason) from None
