"""Warm predictions through the API (aiohttp's test client, the stub worker for the sweep): a
test script that opts in to the serve protocol is kept running per model, reused, replaced
when the best run or the script changes, when it dies or times out, and stopped at the end."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from pathlib import Path

import aiohttp
import pytest

from service.settings import Settings, ensure_data_dirs
from service.warm import WARM_POOL
from tests.conftest import make_settings
from tests.helpers import png_bytes
from tests.test_api import make_model, upload_two_labels, wait_for_status

# A test script that speaks the protocol (with the marker) or not (without it). It answers with
# its pid, mode and working directory; FAKE_SERVE_* environment variables make it misbehave.
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


    def answer(image, mode):
        if hang and os.path.exists(hang):
            time.sleep(600)
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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "data",
                             SWEEPLAB_TEST_SCRIPT=str(write_fake_serve(tmp_path)),
                             SWEEPLAB_PREDICT_TIMEOUT_S="5", SWEEPLAB_PREDICT_IDLE_S="60")
    ensure_data_dirs(settings)
    return settings


def image_parts(*images: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for n, data in enumerate(images):
        form.add_field("image", data, filename=f"digit-{n}.png")
    return form


async def sweep_to_best(client, model_id: int, grid: dict) -> int:
    created = await client.post(f"/api/v1/models/{model_id}/experiments", json={"grid": grid})
    assert created.status == 201, await created.text()
    done = await wait_for_status(client, (await created.json())["id"], {"completed"})
    return done["best"]["run_id"]


async def trained(client) -> tuple[int, int]:
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    return model_id, await sweep_to_best(client, model_id, {"i": [0.1], "j": [1], "k": [5]})


async def predict(client, model_id: int, *images: bytes) -> tuple[int, dict]:
    response = await client.post(f"/api/v1/models/{model_id}/predict",
                                 data=image_parts(*images))
    return response.status, await response.json()


async def gone(pid: int, timeout: float = 10.0) -> bool:
    """True once `pid` no longer exists (reaped, not a zombie)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while Path(f"/proc/{pid}").exists():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_the_warm_process_is_reused_and_answers_like_a_cold_one(client, db, stub_worker,
                                                                       settings):
    # Given a model with a best run and a test script that opts in
    model_id, best = await trained(client)
    # When two requests predict, one image then a batch of three
    status, first = await predict(client, model_id, png_bytes(1))
    status_batch, batch = await predict(client, model_id, png_bytes(2), png_bytes(3),
                                        png_bytes(4))
    # Then both were answered by one warm process, in the best run's folder
    assert status == 200 and status_batch == 200, (first, batch)
    assert first["output"]["mode"] == "warm" and first["run_id"] == best
    assert first["output"]["cwd"] == str(settings.runs_dir / str(best))
    pids = {first["output"]["pid"]} | {p["output"]["pid"] for p in batch["predictions"]}
    assert pids == {client.app[WARM_POOL].pids()[model_id]}
    # and each answer is today's object, its log line kept in `stdout`, in the order sent
    assert set(first) == {"run_id", "params", "output", "stdout", "duration_s"}
    assert first["stdout"].startswith("a log line before the result\n")
    assert [Path(p["output"]["image"]).name for p in batch["predictions"]] == [
        "image-000.png", "image-001.png", "image-002.png"]
    assert list(settings.tmp_dir.iterdir()) == []


async def test_a_new_best_run_or_a_changed_script_gets_a_new_process(client, db, stub_worker,
                                                                      settings, monkeypatch):
    # Given a warm process for the model's best run
    monkeypatch.setenv("FAKE_TRAIN_MODE", "smooth")
    model_id, first_best = await trained(client)
    _, before = await predict(client, model_id, png_bytes(1))
    old_pid = before["output"]["pid"]
    # When a better run becomes the best
    new_best = await sweep_to_best(client, model_id, {"i": [0.01], "j": [3], "k": [2500]})
    assert new_best != first_best
    status, after = await predict(client, model_id, png_bytes(1))
    # Then the old process is gone and a new one answers, in the new run's folder
    assert status == 200, after
    assert after["run_id"] == new_best and after["output"]["i"] == "0.01"
    assert after["output"]["pid"] != old_pid and await gone(old_pid)
    assert after["output"]["cwd"] == str(settings.runs_dir / str(new_best))
    # And when the script itself changes, the next request starts it afresh
    script = settings.test_script
    script.write_text(script.read_text() + "\n# edited\n")
    _, edited = await predict(client, model_id, png_bytes(1))
    assert edited["output"]["pid"] != after["output"]["pid"]
    assert await gone(after["output"]["pid"])


async def test_a_killed_process_is_replaced_and_no_request_fails(client, db, stub_worker):
    model_id, _ = await trained(client)
    _, before = await predict(client, model_id, png_bytes(1))
    old_pid = before["output"]["pid"]
    # When the warm process is killed behind the API's back
    os.kill(old_pid, signal.SIGKILL)
    # Then the next requests are answered (cold at worst) and a new warm process serves them
    status, next_one = await predict(client, model_id, png_bytes(2))
    assert status == 200, next_one
    _, later = await predict(client, model_id, png_bytes(3))
    assert later["output"]["mode"] == "warm" and later["output"]["pid"] != old_pid


async def test_a_timeout_kills_the_process_answers_409_and_the_next_request_recovers(
        client, db, stub_worker, tmp_path, monkeypatch):
    # Given a warm process whose script hangs on images while a flag file exists
    flag = tmp_path / "hang"
    monkeypatch.setenv("FAKE_SERVE_HANG", str(flag))
    model_id, _ = await trained(client)
    _, before = await predict(client, model_id, png_bytes(1))
    old_pid = before["output"]["pid"]
    # When an image hangs past SWEEPLAB_PREDICT_TIMEOUT_S (5 s)
    flag.touch()
    status, body = await predict(client, model_id, png_bytes(2))
    # Then the request is 409, saying so, and the process is killed
    assert status == 409, body
    assert body["error"]["message"] == "the test script timed out after 5 s"
    assert await gone(old_pid)
    # And once the script behaves, the next request is answered by a fresh process
    flag.unlink()
    status, after = await predict(client, model_id, png_bytes(3))
    assert status == 200 and after["output"]["mode"] == "warm", after
    assert after["output"]["pid"] != old_pid


async def test_an_error_line_fails_the_request_naming_the_image_and_keeps_the_process(
        client, db, stub_worker, monkeypatch):
    monkeypatch.setenv("FAKE_SERVE_FAIL_OVER", "1000")  # png_bytes(size=2000) is bigger
    model_id, _ = await trained(client)
    _, before = await predict(client, model_id, png_bytes(1))
    status, body = await predict(client, model_id, png_bytes(2), png_bytes(3, size=2000),
                                 png_bytes(4))
    assert status == 409, body
    assert body["error"]["message"] == ("image 2 of 3 ('digit-1.png'): the test script "
                                        "failed: too big for me")
    assert body["failed"] == {"index": 1, "name": "digit-1.png"}
    _, after = await predict(client, model_id, png_bytes(5))
    assert after["output"]["pid"] == before["output"]["pid"]


async def test_a_process_that_cannot_start_falls_back_to_cold(client, db, stub_worker,
                                                              monkeypatch, caplog):
    monkeypatch.setenv("FAKE_SERVE_START", "broken")
    model_id, _ = await trained(client)
    status, body = await predict(client, model_id, png_bytes(1), png_bytes(2))
    assert status == 200, body
    assert [p["output"]["mode"] for p in body["predictions"]] == ["cold", "cold"]
    assert "did not start" in caplog.text and "cannot serve today" in caplog.text
    assert client.app[WARM_POOL].pids() == {}


async def test_idle_processes_are_stopped_and_shutdown_stops_the_rest(
        aiohttp_client, tmp_path, stub_broker, stub_worker, settings):
    from dataclasses import replace

    from service.app import create_app

    # Given an API whose warm processes are stopped after 1 s unused
    app = create_app(replace(settings, predict_idle_s=1.0), broker=stub_broker)
    client = await aiohttp_client(app)
    model_id, _ = await trained(client)
    _, first = await predict(client, model_id, png_bytes(1))
    # Then, left alone, the process is stopped
    assert await gone(first["output"]["pid"])
    assert app[WARM_POOL].pids() == {}
    # And one still running when the API stops is stopped with it
    _, second = await predict(client, model_id, png_bytes(2))
    await client.close()
    assert await gone(second["output"]["pid"])
