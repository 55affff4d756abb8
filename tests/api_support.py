"""Helpers for the tests that drive the API through aiohttp's in-process test client (the
`client` fixture), with the stub broker and a worker thread running the fake scripts."""

from __future__ import annotations

import asyncio
import re
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import aiohttp

from tests.helpers import png_bytes, trash_emptied, zip_bytes

SMALL = {"i": [0.1], "j": [1], "k": [5]}  # one run
TWO = {"i": [0.1], "j": [1, 2], "k": [5]}  # two configurations, j=2 the better


async def wait_for_status(client, experiment_id: int, statuses, timeout: float = 30) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = await (await client.get(f"/api/v1/experiments/{experiment_id}")).json()
        if body["status"] in statuses:
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


async def wait_until(condition, timeout: float, what: str) -> None:
    """Await `condition()` until it is true; fail naming `what` once `timeout` seconds passed."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def wait_for_removal(data_dir: Path, timeout: float = 30) -> None:
    """Until the deletions so far had their folders removed in the background."""
    async def removed() -> bool:
        return trash_emptied(data_dir)

    await wait_until(removed, timeout, "the deleted folders to be removed")


async def make_model(client, name: str = "digits") -> int:
    response = await client.post("/api/v1/models", json={"name": name})
    assert response.status == 201
    return (await response.json())["id"]


def image_form(files: dict[str, bytes], label: str | None = None) -> aiohttp.FormData:
    form = aiohttp.FormData()
    if label is not None:
        form.add_field("label", label)
    for name, data in files.items():
        form.add_field("images", data, filename=name, content_type="application/octet-stream")
    return form


async def upload_two_labels(client, model_id: int) -> dict:
    archive = zip_bytes({f"{label}/{n}.png": png_bytes(label * 20 + n)
                         for label in (1, 2) for n in range(3)})
    response = await client.post(f"/api/v1/models/{model_id}/images",
                                 data=image_form({"train.zip": archive}))
    assert response.status == 201, await response.text()
    return await response.json()


async def model_with_images(client, name: str = "digits") -> int:
    """A new model with six images, three of each of labels 1 and 2."""
    model_id = await make_model(client, name)
    await upload_two_labels(client, model_id)
    return model_id


async def swept(client, model_id: int, body: dict, statuses=("completed",)) -> dict:
    """An experiment of `body` on the model, waited for until its status is one of `statuses`."""
    created = await client.post(f"/api/v1/models/{model_id}/experiments", json=body)
    assert created.status == 201, await created.text()
    return await wait_for_status(client, (await created.json())["id"], set(statuses))


async def sweep_to_end(client, body: dict, statuses=("completed",)) -> dict:
    """A new model with two labels and an experiment of `body` on it, waited for until it
    ends; the experiment, with `model_id` added."""
    model_id = await model_with_images(client)
    return {**await swept(client, model_id, body, statuses), "model_id": model_id}


async def started_run(client) -> tuple[int, int]:
    """A new model and an experiment of one run, started: (experiment id, run id)."""
    model_id = await model_with_images(client)
    created = await client.post(f"/api/v1/models/{model_id}/experiments", json={"grid": SMALL})
    experiment = await created.json()
    return experiment["id"], experiment["runs"][0]["id"]


async def sweep_to_best(client, model_id: int, grid: dict) -> int:
    return (await swept(client, model_id, {"grid": grid}))["best"]["run_id"]


async def trained(client) -> tuple[int, int]:
    """A model with one finished run: (model id, its best run id)."""
    model_id = await model_with_images(client)
    return model_id, await sweep_to_best(client, model_id, SMALL)


def image_parts(*images: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for n, data in enumerate(images):
        form.add_field("image", data, filename=f"digit-{n}.png")
    return form


async def predict(client, model_id: int, *images: bytes) -> tuple[int, dict]:
    response = await client.post(f"/api/v1/models/{model_id}/predict",
                                 data=image_parts(*images))
    return response.status, await response.json()


async def csrf_of(client) -> str:
    page = await client.get("/")
    return re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)


# A test script that speaks the serve protocol (with the marker) or not (without it). It answers
# with its pid, mode and working directory; FAKE_SERVE_* environment variables make it misbehave.
FAKE_SERVE = textwrap.dedent('''\
    """A prediction script for the tests; hand-parsed flags like the assignment's."""
    {marker}
    import json
    import os
    import sys
    import time

    argv = sys.argv[1:]
    serve = "--serve" in argv
    if serve:
        argv.remove("--serve")
    args = {{argv[n].lstrip("-"): argv[n + 1] for n in range(0, len(argv), 2)}}
    hang = os.environ.get("FAKE_SERVE_HANG")  # a file: while it exists, every image hangs
    fail_over = int(os.environ.get("FAKE_SERVE_FAIL_OVER", "0"))  # bytes: bigger images fail
    die_over = int(os.environ.get("FAKE_SERVE_DIE_OVER", "0"))  # bytes: bigger ones kill it warm
    # "N:FILE": the first process to reach its Nth image writes its pid to FILE and waits there
    # (to be killed); once FILE exists, no process waits again
    pause_at, _, pause_file = os.environ.get("FAKE_SERVE_PAUSE_AT", "0:").partition(":")
    served = 0


    def answer(image, mode):
        global served
        served += 1
        if mode == "warm" and served == int(pause_at) and not os.path.exists(pause_file):
            with open(pause_file + ".part", "w") as handle:
                handle.write(str(os.getpid()))
            os.rename(pause_file + ".part", pause_file)
            time.sleep(600)
        if hang and os.path.exists(hang):
            time.sleep(600)
        if mode == "warm" and die_over and os.path.getsize(image) > die_over:
            os.kill(os.getpid(), 9)
        if fail_over and os.path.getsize(image) > fail_over:
            return {{"image": image, "error": "too big for me"}}
        return {{"i": args["i"], "image": image, "label": "3", "mode": mode, "pid": os.getpid(),
                "cwd": os.getcwd()}}


    if not serve:
        result = answer(args["image"], "cold")
        if "error" in result:
            sys.exit("error: " + result["error"])
        print(result)
        sys.exit(0)
    if os.environ.get("FAKE_SERVE_START") == "broken":
        print("cannot serve today", file=sys.stderr)
        sys.exit(4)
    print("warming up")  # not the ready line: skipped
    print(json.dumps({{"sweeplab_serve": 1}}), flush=True)
    for line in sys.stdin:
        print("a log line before the result")
        print(json.dumps(answer(line.rstrip("\\n"), "warm")), flush=True)
''')


def write_fake_serve(folder: Path, opt_in: bool = True) -> Path:
    script = folder / ("serve_predict.py" if opt_in else "plain_predict.py")
    script.write_text(FAKE_SERVE.format(marker="# sweeplab: serve" if opt_in else ""))
    return script


class FormFields(HTMLParser):
    """The fields a browser without JavaScript sends for the form with id `form_id`."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.select = form_id, False, None
        self.fields: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        if tag == "form":
            self.inside = found.get("id") == self.form_id
        elif self.inside and tag == "input" and found.get("name"):
            if found.get("type") != "checkbox" or "checked" in found:
                self.fields.append((found["name"], found.get("value", "")))
        elif self.inside and tag == "select":
            self.select = found["name"]
        elif self.select and tag == "option" and "selected" in found:
            self.fields.append((self.select, found["value"]))

    def handle_endtag(self, tag: str) -> None:
        self.inside = self.inside and tag != "form"
        self.select = None if tag == "select" else self.select


def sweep_form_fields(html: str) -> list[tuple[str, str]]:
    parser = FormFields("sweep-form")
    parser.feed(html)
    return parser.fields


async def post_sweep(client, fields: dict[str, str]) -> aiohttp.ClientResponse:
    """The model page's sweep form as shown, with `fields` typed in, posted without JS."""
    shown = dict(sweep_form_fields(await (await client.get("/models/1")).text()))
    return await client.post("/models/1/experiments", data={**shown, **fields},
                             allow_redirects=False)
