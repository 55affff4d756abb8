"""The README's "Bring your own code" walk, on the real RabbitMQ with a real worker: the bundled
examples/svm tree is uploaded as a model's code, swept over its own flags (a string, a float and
a float of its own names), and answers a prediction with its own test.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e_support import multipart
from tests.helpers import png_bytes, tar_gz_bytes, zip_bytes

pytestmark = pytest.mark.e2e
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "svm"


def _files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def _digits(stack) -> int:
    """A model with 24 images of two labels that differ (dark and light), 12 of each."""
    status, model = stack.request("POST", "/api/v1/models", {"name": "svm"})
    assert status == 201, model
    images = {f"{label}/{n}.png": png_bytes(shade + n, 8)
              for label, shade in (("dark", 10), ("light", 200)) for n in range(12)}
    body, headers = multipart({"images": ("train.zip", zip_bytes(images))})
    status, uploaded = stack.request("POST", f"/api/v1/models/{model['id']}/images",
                                     data=body, headers=headers)
    assert status == 201 and uploaded["added"] == 24, uploaded
    return model["id"]


def test_the_svm_example_sweeps_its_own_flags_and_predicts(make_stack):
    stack = make_stack()
    model_id = _digits(stack)
    body, headers = multipart({"archive": ("svm.tar.gz", tar_gz_bytes(_files(EXAMPLE)))})
    status, code = stack.request("POST", f"/api/v1/models/{model_id}/code", data=body,
                                 headers=headers)
    assert status == 201, code
    assert (code["train"], code["test"]) == ("train.py", "test.py")
    grid = {"kernel": ["rbf", "linear"], "C": [1.0], "gamma": [0.01]}
    status, created = stack.request("POST", f"/api/v1/models/{model_id}/experiments",
                                    {"grid": grid})
    assert status == 201, created
    assert created["code_version"] == code["version"]
    done = stack.wait_for_experiment(created["id"])
    assert done["counts"]["succeeded"] == 2, [run["error"] for run in done["runs"]]
    assert {run["params"]["kernel"] for run in done["runs"]} == {"rbf", "linear"}
    assert list(done["best"]["params"]) == ["kernel", "C", "gamma"]
    assert 0.5 < done["best"]["value"] <= 1.0  # two well-separated labels: better than chance
    body, headers = multipart({"image": ("x.png", png_bytes(205, 8))})
    status, predicted = stack.request("POST", f"/api/v1/models/{model_id}/predict",
                                      data=body, headers=headers)
    assert status == 200, predicted
    assert predicted["output"]["label"] == "light"
    # When newer code is uploaded (its test.py answers another label), the experiment that
    # made the best keeps its own: predictions still run the tree it pinned
    changed = (EXAMPLE / "test.py").read_text().replace(
        "print({\"image\": str(args.image), \"label\": str(model.classes_[best]),",
        "print({\"image\": str(args.image), \"label\": \"changed\",")
    assert changed != (EXAMPLE / "test.py").read_text()
    files = {name: (name, (EXAMPLE / name).read_bytes()) for name in ("train.py", "sweeplab.toml")}
    body, headers = multipart({"archive": ("v2.tar.gz", tar_gz_bytes(
        {**{name: data for name, (_, data) in files.items()}, "test.py": changed.encode()}))})
    status, newer = stack.request("POST", f"/api/v1/models/{model_id}/code", data=body,
                                  headers=headers)
    assert status == 201 and newer["version"] != code["version"], newer
    body, headers = multipart({"image": ("x.png", png_bytes(205, 8))})
    status, again = stack.request("POST", f"/api/v1/models/{model_id}/predict", data=body,
                                  headers=headers)
    assert status == 200 and again["output"]["label"] == "light", again
    status, experiment = stack.get(f"/api/v1/experiments/{created['id']}")
    assert experiment["code_version"] == code["version"]
