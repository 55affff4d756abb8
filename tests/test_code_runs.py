"""End to end: a model's own code, run by a remote worker on the real RabbitMQ.

The code bundle is ours, not train.py: flags of its own names (a string, a float, an integer), a
module of its own imported from the tree's root, and a requirements.txt naming a package only a
local wheelhouse holds (the hosts are offline: PIP_NO_INDEX, PIP_FIND_LINKS). The code version's
rows and tree are made as an upload leaves them (tests.helpers.add_code_version)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e_support import (
    WORKER_TOKEN,
    Stack,
    multipart,
    small_dataset,
    start_remote_worker,
    stop_group,
)
from tests.helpers import add_code_version, make_wheel, pin_code_version, png_bytes, wait_for

pytestmark = pytest.mark.e2e

TRAIN = b'''"""Trains nothing; scores its flags with the tree's own module and the wheelhouse's."""
import argparse
import json
import os

import tinydep
from nets.scorer import score

parser = argparse.ArgumentParser()
parser.add_argument("--optimizer", required=True)
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--layers", type=int, required=True)
parser.add_argument("--images", required=True)
args = parser.parse_args()
assert json.loads(os.environ["SWEEPLAB_PARAMS"]) == json.load(open("params.json"))
with open("model.json", "w") as out:
    json.dump({"optimizer": args.optimizer, "lr": args.lr, "layers": args.layers}, out)
print({"accuracy": score(args.optimizer, args.lr, args.layers) + tinydep.VALUE / 1000})
'''
TEST = b'''"""Labels every image "7", saying with which model and parameters."""
import argparse
import json
import os

import tinydep

parser = argparse.ArgumentParser()
parser.add_argument("--optimizer")
parser.add_argument("--lr", type=float)
parser.add_argument("--layers", type=int)
parser.add_argument("--image", required=True)
args = parser.parse_args()
print({"label": "7", "model": json.load(open("model.json")), "tinydep": tinydep.VALUE,
       "params": json.loads(os.environ["SWEEPLAB_PARAMS"])})
'''
SCORER = b'''def score(optimizer, lr, layers):
    return 0.4 + (0.1 if optimizer == "adam" else 0.0) + 2 * lr + 0.01 * layers
'''
GRID = {"optimizer": ["sgd", "adam"], "lr": [0.01, 0.05], "layers": [2]}


def _bundle(requirements: bytes) -> dict[str, bytes]:
    return {"train.py": TRAIN, "test.py": TEST, "nets/__init__.py": b"",
            "nets/scorer.py": SCORER, "requirements.txt": requirements}


@pytest.fixture
def code_stack(tmp_path: Path, vhost_url: str):
    """The API (worker routes open, every request in its access log, offline pip) and an
    aggregate-only worker on its host; training is left to remote workers."""
    wheelhouse = tmp_path / "wheelhouse"
    make_wheel(wheelhouse, "tinydep", "1.0", "VALUE = 42\n")
    stack = Stack(tmp_path / "api-data", vhost_url, SWEEPLAB_WORKER_TOKEN=WORKER_TOKEN,
                  SWEEPLAB_ACCESS_LOG="all", PIP_NO_INDEX="1",
                  PIP_FIND_LINKS=str(wheelhouse))
    stack.start_api()
    dramatiq = str(Path(sys.executable).parent / "dramatiq")
    stack.worker = stack._spawn([dramatiq, "actors", "--queues", "sweeplab_aggregate"],
                                "aggregate.log")
    yield stack
    stack.stop()


def _experiment(stack: Stack, model_id: int, version: str) -> int:
    """An experiment over GRID pinned to `version`, then started."""
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                    {"grid": GRID, "start": False})
    assert status == 201, created
    pin_code_version(stack.data_dir, created["id"], version)
    status, started = stack.request("POST", f"/api/v1/experiments/{created['id']}/start")
    assert status in (200, 202), started
    return created["id"]


def _runs(stack: Stack, experiment_id: int) -> list[dict]:
    status, body = stack.get(f"/api/v1/experiments/{experiment_id}")
    assert status == 200, body
    return body["runs"]


@contextmanager
def _remote_sweep(stack: Stack, tmp_path: Path, name: str,
                  requirements: bytes) -> Iterator[tuple[int, str, Path, int, dict]]:
    """A model of `name` with a code version needing `requirements`, swept to its end by a
    remote worker of its own (offline, from the stack's wheelhouse), which is stopped after:
    (model id, version, the worker's data dir, experiment id, the ended experiment)."""
    model_id = small_dataset(stack, name)
    version = add_code_version(stack.data_dir, model_id, _bundle(requirements),
                               requirements="requirements.txt")
    remote_dir = tmp_path / "remote-data"
    worker = start_remote_worker(stack, remote_dir, "remote",
                                 PIP_NO_INDEX="1", PIP_FIND_LINKS=stack.env["PIP_FIND_LINKS"])
    try:
        experiment_id = _experiment(stack, model_id, version)
        yield (model_id, version, remote_dir, experiment_id,
               stack.wait_for_experiment(experiment_id, timeout=240))
    finally:
        stop_group(worker, timeout=20)


def test_a_remote_worker_trains_and_the_api_predicts_with_the_models_own_code(
        code_stack: Stack, tmp_path: Path) -> None:
    # Given a model whose code version has its own flags, module and requirements
    stack = code_stack
    # When an experiment pinned to it runs on the remote worker (two threads at once)
    with _remote_sweep(stack, tmp_path, "own-code", b"tinydep==1.0\n") as sweep:
        model_id, version, remote_dir, experiment_id, done = sweep

        # Then every run succeeded with its own parameters, and the best is adam at 0.05
        runs = _runs(stack, experiment_id)
        assert done["status"] == "completed", (runs, stack.log("remote.log"))
        assert all(run["status"] == "succeeded" for run in runs), runs
        assert sorted((run["params"]["optimizer"], run["params"]["lr"]) for run in runs) == [
            ("adam", 0.01), ("adam", 0.05), ("sgd", 0.01), ("sgd", 0.05)]
        status, best = stack.get(f"/api/v1/models/{model_id}/best")
        assert status == 200, best
        assert best["params"] == {"optimizer": "adam", "lr": 0.05, "layers": 2}
        assert best["accuracy"] == pytest.approx(0.4 + 0.1 + 0.1 + 0.02 + 0.042)

        # And the remote host fetched the tree once, checked, into its cache
        assert (remote_dir / "code" / version / "nets" / "scorer.py").read_bytes() == SCORER
        fetches = re.findall(rf"GET /api/v1/worker/code/{version}\S* HTTP/1\.1\" 200",
                             stack.log("api.log", tail=10**7))
        assert len(fetches) == 1, stack.log("api.log")

        # And predict runs the tree's test.py in its environment, with the best run's model
        body, headers = multipart({"image": ("seven.png", png_bytes(7))})
        status, answer = stack.request("POST", f"/api/v1/models/{model_id}/predict",
                                       data=body, headers=headers)
        assert status == 200, answer
        assert answer["output"]["label"] == "7"
        assert answer["output"]["tinydep"] == 42
        assert answer["output"]["model"] == best["params"]
        assert answer["output"]["params"] == best["params"]


def test_a_requirement_no_index_holds_fails_every_run_at_once_with_pips_reason(
        code_stack: Stack, tmp_path: Path) -> None:
    # Given a code version whose requirements name a package the wheelhouse lacks
    stack = code_stack
    # When its experiment runs on the remote worker
    with _remote_sweep(stack, tmp_path, "bad-requirements", b"nosuchpkgzz==1\n") as sweep:
        _, _, remote_dir, experiment_id, done = sweep

        # Then every run failed, once, saying pip's reason, and pip ran once on that host
        runs = _runs(stack, experiment_id)
        assert done["status"] == "failed", runs
        for run in runs:
            assert run["status"] == "failed", run
            assert run["error"].startswith("environment could not be built: "), run
            assert "No matching distribution found for nosuchpkgzz==1" in run["error"], run
            assert run["attempts"] == 1, run
        logs = list((remote_dir / "envs").glob("*.log"))
        assert sum(log.read_text().count("=== building ") for log in logs) == 1
        wait_for(lambda: (remote_dir / "envs").glob("*.failed"), 5, "the failure remembered")
