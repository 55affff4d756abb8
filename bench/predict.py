"""Prediction throughput: cold single requests (today's path) against a batch request and
against the warm serve protocol, with our real train.py / test.py on the bundled digits.

One API serves every phase. Its test script is a copy of test.py: without its
`# sweeplab: serve` line for the cold phases, with it for the warm ones (the API notices the
script changed and starts a warm process). Phases alternate round by round, so the machine's
other load falls on all of them alike; each figure is the median over the rounds, with the
spread.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from bench.common import Result
from scripts.make_sample_data import write_sample
from tests.e2e_support import ROOT, Stack, VirtualHost, multipart

WARM_TARGET = 50.0  # predictions per second, warm, one image per request
SERVE_LINE = "# sweeplab: serve"


def images_body(images: list[tuple[str, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A multipart body with one `image` part per image (e2e_support's takes unique names)."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
             f'filename="{name}"\r\nContent-Type: image/png\r\n\r\n'.encode() + data + b"\r\n"
             for name, data in images]
    return (b"".join(parts) + f"--{boundary}--\r\n".encode(),
            {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def write_test_script(folder: Path, warm: bool) -> None:
    """Our test.py, with or without its opt-in line (train.py beside it: test.py imports it)."""
    text = (ROOT / "test.py").read_text()
    if not warm:
        text = "\n".join(line for line in text.splitlines()
                         if not line.startswith(SERVE_LINE)) + "\n"
    (folder / "test.py").write_text(text)


class Predictor:
    def __init__(self, stack: Stack, model_id: int, images: list[tuple[str, bytes]]) -> None:
        self.stack, self.model_id, self.images = stack, model_id, images

    def post(self, images: list[tuple[str, bytes]]) -> dict:
        body, headers = images_body(images)
        status, answer = self.stack.request("POST", f"/api/v1/models/{self.model_id}/predict",
                                            data=body, headers=headers)
        assert status == 200, answer
        return answer

    def singles(self, count: int) -> float:
        """Predictions per second, one image per request, one request after another."""
        started = time.perf_counter()
        for n in range(count):
            self.post([self.images[n % len(self.images)]])
        return count / (time.perf_counter() - started)

    def batch(self, count: int) -> float:
        chosen = [self.images[n % len(self.images)] for n in range(count)]
        started = time.perf_counter()
        answer = self.post(chosen)
        assert len(answer["predictions"]) == count, answer
        return count / (time.perf_counter() - started)


def trained_model(stack: Stack, sample: Path) -> int:
    """A model of 30 digits per label and its one-run sweep (our train.py, about 3 s)."""
    _, model = stack.request("POST", "/api/v1/models", {"name": "predict-bench"})
    small = sample / "small.zip"
    with zipfile.ZipFile(small, "w") as archive:
        for folder in sorted((sample / "train").iterdir()):
            for file in sorted(folder.iterdir())[:30]:
                archive.write(file, f"{folder.name}/{file.name}")
    body, headers = multipart({"images": ("small.zip", small.read_bytes())})
    status, _ = stack.request("POST", f"/api/v1/models/{model['id']}/images", data=body,
                              headers=headers)
    assert status == 201
    _, experiment = stack.request("POST", f"/api/v1/models/{model['id']}/experiments",
                                  {"grid": {"i": [0.01], "j": [1], "k": [400]}})
    done = stack.wait_for_experiment(experiment["id"])
    assert done["status"] == "completed", done
    return model["id"]


def serving(script: Path) -> bool:
    """Whether a `test.py --serve` of this copy is running."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if str(script).encode() in argv and b"--serve" in argv:
            return True
    return False


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.1f}/s (from {min(values):.1f} to " \
           f"{max(values):.1f} over {len(values)} rounds)"


def measure(predictor: Predictor, scripts: Path, sizes: tuple[int, int, int, int]
            ) -> dict[str, list[float]]:
    cold_singles, batch_size, warm_singles, rounds = sizes
    figures: dict[str, list[float]] = {"cold": [], "cold batch": [], "warm": [],
                                       "warm batch": []}
    for _ in range(rounds):
        write_test_script(scripts, warm=False)
        figures["cold"].append(predictor.singles(cold_singles))
        figures["cold batch"].append(predictor.batch(batch_size))
        write_test_script(scripts, warm=True)
        predictor.post(predictor.images[:1])  # starts the warm process: not timed
        assert serving(scripts / "test.py"), "no warm test.py running"
        figures["warm"].append(predictor.singles(warm_singles))
        figures["warm batch"].append(predictor.batch(batch_size))
    return figures


def results(figures: dict[str, list[float]], sizes: tuple[int, int, int, int]) -> list[Result]:
    cold_singles, batch_size, warm_singles, _ = sizes
    median = {name: statistics.median(values) for name, values in figures.items()}
    return [
        Result("predict: warm, one image per request",
               f"{spread(figures['warm'])} over {warm_singles} sequential requests; cold "
               f"(today's path) {spread(figures['cold'])}: {median['warm'] / median['cold']:.0f}"
               f"x", f">= {WARM_TARGET:g} predictions/s", median["warm"] >= WARM_TARGET),
        Result(f"predict: cold batch of {batch_size} vs single requests",
               f"batch {spread(figures['cold batch'])} vs {cold_singles} single requests "
               f"{median['cold']:.1f}/s: {median['cold batch'] / median['cold']:.2f}x",
               "batch faster than single requests", median["cold batch"] > median["cold"]),
        Result(f"predict: warm batch of {batch_size}",
               f"{spread(figures['warm batch'])}: {median['warm batch'] / median['cold']:.0f}x "
               f"cold single requests", f">= {WARM_TARGET:g} predictions/s",
               median["warm batch"] >= WARM_TARGET),
    ]


def run(cold_singles: int, batch_size: int, warm_singles: int, rounds: int) -> list[Result]:
    sizes = (cold_singles, batch_size, warm_singles, rounds)
    with tempfile.TemporaryDirectory() as folder, VirtualHost() as url:
        scripts = Path(folder) / "scripts"
        scripts.mkdir()
        shutil.copy(ROOT / "train.py", scripts / "train.py")
        write_test_script(scripts, warm=False)
        sample = Path(folder) / "sample"
        write_sample(sample)
        stack = Stack(Path(folder) / "data", url, threads=1,
                      SWEEPLAB_TEST_SCRIPT=str(scripts / "test.py"))
        try:
            stack.start_api()
            stack.start_worker()
            model_id = trained_model(stack, sample)
            images = [(p.name, p.read_bytes()) for p in sorted((sample / "heldout").iterdir())]
            figures = measure(Predictor(stack, model_id, images), scripts, sizes)
        finally:
            stack.stop()
    found = results(figures, sizes)
    for result in found:
        print(result.line(), flush=True)
    return found
