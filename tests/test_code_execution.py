"""Running a model's own code through the API and the stub worker: its train.py with its flags,
reuse keyed on the code version, a version without test.py refused for predictions; and a
remote worker's code cache refusing a tree that is not the version it asked for."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from actors.stores.base import CodeUnusable
from actors.stores.code_cache import CodeCache
from tests.api_support import make_model, predict, upload_two_labels, wait_for_status
from tests.helpers import add_code_version, pin_code_version, png_bytes, tar_gz_bytes

TRAIN = b'''import argparse
from scoring import score
parser = argparse.ArgumentParser()
parser.add_argument("--kernel")
parser.add_argument("--C", type=float)
parser.add_argument("--images")
args = parser.parse_args()
print("accuracy:", score(args.kernel, args.C))
'''
SCORING = b'''def score(kernel, C):
    return (0.5 if kernel == "rbf" else 0.3) + C / 100
'''
GRID = {"kernel": ["rbf", "linear"], "C": [1.0, 10.0]}


async def _pinned_sweep(client, settings, model_id: int, version: str) -> dict:
    created = await client.post(f"/api/v1/models/{model_id}/experiments",
                                json={"grid": GRID, "start": False})
    assert created.status == 201, await created.text()
    experiment_id = (await created.json())["id"]
    pin_code_version(settings.data_dir, experiment_id, version)
    started = await client.post(f"/api/v1/experiments/{experiment_id}/start")
    assert started.status in (200, 202), await started.text()
    return await wait_for_status(client, experiment_id, {"completed", "failed"})


async def test_a_code_version_trains_its_own_script_and_reuse_keys_on_the_version(
        client, db, stub_worker, settings):
    # Given a model whose code (no test.py) has flags of its own and a module beside train.py
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    files = {"train.py": TRAIN, "scoring.py": SCORING}
    first = add_code_version(settings.data_dir, model_id, files, test=None)

    # When an experiment pinned to it runs
    done = await _pinned_sweep(client, settings, model_id, first)

    # Then each run ran the tree's train.py with its flags
    assert done["status"] == "completed", done
    accuracies = {(run["params"]["kernel"], run["params"]["C"]): run["accuracy"]
                  for run in done["runs"]}
    assert accuracies == {("rbf", 1.0): 0.51, ("rbf", 10.0): 0.6, ("linear", 1.0): 0.31,
                          ("linear", 10.0): 0.4}
    assert all(run["reused_from"] is None for run in done["runs"])

    # And a second experiment on the same version reuses every result
    again = await _pinned_sweep(client, settings, model_id, first)
    assert sorted(run["reused_from"] for run in again["runs"]) == sorted(
        run["id"] for run in done["runs"])

    # And one on another version (one byte changed in a module) trains afresh
    other = add_code_version(settings.data_dir, model_id,
                             {**files, "scoring.py": SCORING + b"\n"}, test=None)
    assert other != first
    changed = await _pinned_sweep(client, settings, model_id, other)
    assert all(run["reused_from"] is None for run in changed["runs"]), changed["runs"]

    # And predicting with the best run's version, which has no test.py, is refused, saying so
    # (the best: the highest accuracy, ties to the earliest run, the first experiment's)
    status, body = await predict(client, model_id, png_bytes(3))
    assert status == 409, body
    assert f"code version {first} has no test.py" in body["error"]["message"]


def test_a_fetched_tree_that_is_not_the_version_asked_for_is_refused_and_not_kept(
        tmp_path: Path) -> None:
    # Given an API that sends other files than the version's
    version = _version_of({"train.py": b"print('accuracy: 1')\n"})

    def fetch(_: str) -> Iterator[IO[bytes]]:
        yield io.BytesIO(tar_gz_bytes({"train.py": b"print('accuracy: 0')\n"}, mode="w"))

    cache = CodeCache(tmp_path / "worker" / "code", fetch)

    # When the worker asks for the version, it is refused, and nothing is kept
    with pytest.raises(CodeUnusable, match=f"code version {version} arrived as another tree"):
        cache.tree(version)
    assert list((tmp_path / "worker" / "code").iterdir()) == []


def test_a_fetched_tree_is_kept_once_and_served_from_the_cache(tmp_path: Path) -> None:
    files = {"train.py": b"print('accuracy: 1')\n", "nets/a.py": b"A = 1\n"}
    version = _version_of(files)
    sent: list[str] = []

    def fetch(asked: str) -> Iterator[IO[bytes]]:
        sent.append(asked)
        yield io.BytesIO(tar_gz_bytes(files, mode="w"))

    cache = CodeCache(tmp_path / "worker" / "code", fetch)
    tree = cache.tree(version)
    assert cache.tree(version) == tree
    assert (tree / "nets" / "a.py").read_bytes() == b"A = 1\n"
    assert sent == [version]


def _version_of(files: dict[str, bytes]) -> str:
    """The version a tree of `files` is named by."""
    import hashlib

    from service.execution.codetree import tree_version

    return tree_version([{"path": path, "size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest()}
                         for path, data in files.items()])
