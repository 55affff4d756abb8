"""Reuse, on the real RabbitMQ with a real worker: the same experiment created twice trains
nothing the second time (its runs take the first ones' results and folders, and answer
predict); a changed script, one more image or `"reuse": false` trains everything again."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e_support import multipart, small_dataset
from tests.helpers import FAKE_PREDICT, FAKE_TRAIN, png_bytes

pytestmark = pytest.mark.e2e
GRID = {"i": [0.1, 0.2], "j": [1, 2], "k": [5]}


def _sweep(stack, model_id: int, **extra) -> dict:
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                    {"grid": GRID, "repeats": 2, **extra})
    assert status == 201, created
    return stack.wait_for_experiment(created["id"])


def _by_config(done: dict) -> dict[tuple, dict]:
    return {(r["params"]["i"], r["params"]["j"], r["seed"]): r for r in done["runs"]}


def _predict(stack, model_id: int) -> dict:
    body, headers = multipart({"image": ("x.png", png_bytes(3))})
    status, predicted = stack.request("POST", f"/api/v1/models/{model_id}/predict",
                                      data=body, headers=headers)
    assert status == 200, predicted
    return predicted


def _trained_everything(done: dict, before: dict) -> None:
    assert done["status"] == "completed" and done["counts"]["succeeded"] == 8
    assert all(run["reused_from"] is None and run["attempts"] == 1 for run in done["runs"])
    assert {run["value"] for run in done["runs"]}.isdisjoint(
        run["value"] for run in before["runs"])  # the fake script's accuracy is random


def test_the_same_experiment_twice_trains_nothing_the_second_time(make_stack, tmp_path):
    # Given our own copy of the training script (so the test can change it)
    script = tmp_path / "train.py"
    shutil.copy(FAKE_TRAIN, script)
    stack = make_stack(SWEEPLAB_TRAIN_SCRIPT=str(script), SWEEPLAB_TEST_SCRIPT=str(FAKE_PREDICT))
    model_id = small_dataset(stack)
    first = _sweep(stack, model_id)
    assert first["reuse"] is True and first["counts"]["succeeded"] == 8
    # When the same experiment is created again
    again = _sweep(stack, model_id)
    # Then no run trained: each took the result of the same configuration and seed
    assert again["status"] == "completed" and again["counts"]["succeeded"] == 8
    originals = _by_config(first)
    for key, run in _by_config(again).items():
        assert run["reused_from"] == originals[key]["id"] and run["attempts"] == 0
        assert run["value"] == originals[key]["value"]
        folder = stack.data_dir / "runs" / str(run["id"])
        original = stack.data_dir / "runs" / str(run["reused_from"])
        assert (folder / "model.txt").stat().st_ino == (original / "model.txt").stat().st_ino
        assert run["duration_s"] == 0  # no worker claimed it (attempts 0), no script ran
    # And the best is the same configuration, and predict answers from a reused folder even
    # once the original experiment's runs are gone with another model holding them
    assert again["best"]["params"] == first["best"]["params"]
    other = small_dataset(stack, name="same images")
    copied = _sweep(stack, other)
    assert all(run["reused_from"] is not None for run in copied["runs"])
    assert stack.request("DELETE", f"/api/v1/models/{model_id}")[0] == 204
    assert _predict(stack, other)["output"]["label"] == "7"

    # When the script changes, everything trains again
    script.write_text(script.read_text() + "\n# a changed script\n")
    changed = _sweep(stack, other)
    _trained_everything(changed, copied)
    # And one more image trains everything again too
    body, headers = multipart({"label": "1", "images": ("extra.png", png_bytes(99))})
    status, uploaded = stack.request("POST", f"/api/v1/models/{other}/images", data=body,
                                     headers=headers)
    assert status == 201 and uploaded["added"] == 1, uploaded
    _trained_everything(_sweep(stack, other), changed)
    # And "reuse": false trains everything, though all is known
    forced = _sweep(stack, other, reuse=False)
    assert forced["reuse"] is False
    assert all(run["reused_from"] is None for run in forced["runs"])
