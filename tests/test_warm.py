"""Warm predictions through the API (aiohttp's test client, the stub worker for the sweep): a
test script that opts in to the serve protocol is kept running per model, reused, replaced
when the best run or the script changes, when it dies or times out, and stopped at the end."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from service.settings import Settings, ensure_data_dirs
from service.web.keys import WARM_POOL
from tests.api_support import predict, sweep_to_best, trained, write_fake_serve
from tests.conftest import make_settings
from tests.helpers import png_bytes


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Without the sandbox: these tests match the pids the script prints with the pool's, and
    # in the sandbox's PID namespace a script sees its own numbers (tests/test_sandbox.py
    # runs warm processes in it)
    settings = make_settings(tmp_path / "data",
                             SWEEPLAB_TEST_SCRIPT=str(write_fake_serve(tmp_path)),
                             SWEEPLAB_PREDICT_TIMEOUT_S="5", SWEEPLAB_PREDICT_IDLE_S="60",
                             SWEEPLAB_SANDBOX="off")
    ensure_data_dirs(settings)
    return settings


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
    assert set(first) == {"run_id", "params", "name", "output", "stdout", "duration_s"}
    assert first["stdout"].startswith("a log line before the result\n")
    # and each names the file uploaded, where the script echoed the temporary path it was given
    assert first["name"] == first["output"]["image"] == "digit-0.png"
    assert [(p["name"], p["output"]["image"]) for p in batch["predictions"]] == [
        ("digit-0.png", "digit-0.png"), ("digit-1.png", "digit-1.png"),
        ("digit-2.png", "digit-2.png")]
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


async def pid_in(file: Path, timeout: float = 30.0) -> int:
    """The pid a paused fake script wrote to `file`, once it is there."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not file.exists():
        assert asyncio.get_running_loop().time() < deadline, f"no {file} within {timeout} s"
        await asyncio.sleep(0.05)
    return int(file.read_text())


def warm_starts(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The pids of the warm processes the pool started, in order."""
    return [record.args[1] for record in caplog.records
            if record.msg.startswith("warm test script of run %s started")]


async def test_a_process_killed_mid_batch_is_replaced_by_one_warm_process_for_the_rest(
        aiohttp_client, stub_broker, stub_worker, settings, tmp_path, monkeypatch, caplog):
    from dataclasses import replace

    from service.app import create_app

    # Given a warm script that waits on the 3rd image of a batch (once), and a time limit far
    # past the time the test takes to kill it
    pause = tmp_path / "paused.pid"
    monkeypatch.setenv("FAKE_SERVE_PAUSE_AT", f"3:{pause}")
    caplog.set_level(logging.INFO, logger="sweeplab.warm")
    app = create_app(replace(settings, predict_timeout_s=30.0), broker=stub_broker)
    client = await aiohttp_client(app)
    model_id, _ = await trained(client)
    # When a batch of six is sent and the warm process is killed (SIGKILL) on its 3rd image
    request = asyncio.create_task(predict(client, model_id, *(png_bytes(n) for n in range(6))))
    killed = await pid_in(pause)
    os.kill(killed, signal.SIGKILL)
    status, body = await request
    # Then the whole batch is answered warm: the first two by the killed process, the 3rd
    # (sent again) and the rest by one new process, which stays for the next request
    assert status == 200, body
    answers = body["predictions"]
    assert [p["output"]["mode"] for p in answers] == ["warm"] * 6
    new = app[WARM_POOL].pids()[model_id]
    assert new != killed
    assert [p["output"]["pid"] for p in answers] == [killed] * 2 + [new] * 4
    assert warm_starts(caplog) == [killed, new]
    assert [p["name"] for p in answers] == [f"digit-{n}.png" for n in range(6)]


async def test_when_no_new_process_starts_mid_batch_the_rest_is_answered_cold(
        aiohttp_client, stub_broker, stub_worker, settings, tmp_path, monkeypatch):
    from dataclasses import replace

    from service.app import create_app

    pause = tmp_path / "paused.pid"
    monkeypatch.setenv("FAKE_SERVE_PAUSE_AT", f"3:{pause}")
    app = create_app(replace(settings, predict_timeout_s=30.0), broker=stub_broker)
    client = await aiohttp_client(app)
    model_id, _ = await trained(client)
    request = asyncio.create_task(predict(client, model_id, *(png_bytes(n) for n in range(5))))
    killed = await pid_in(pause)
    # When the process is killed on the 3rd image and its replacement cannot start
    monkeypatch.setenv("FAKE_SERVE_START", "broken")
    os.kill(killed, signal.SIGKILL)
    status, body = await request
    # Then the 3rd image and the rest are answered cold, in order
    assert status == 200, body
    assert [p["output"]["mode"] for p in body["predictions"]] == ["warm"] * 2 + ["cold"] * 3
    assert [p["name"] for p in body["predictions"]] == [f"digit-{n}.png" for n in range(5)]
    assert app[WARM_POOL].pids() == {}


async def test_an_image_that_kills_two_processes_is_answered_cold_with_the_rest(
        client, db, stub_worker, monkeypatch, caplog):
    # Given a warm script that dies on images over 1000 bytes (its one-shot mode answers them)
    monkeypatch.setenv("FAKE_SERVE_DIE_OVER", "1000")  # png_bytes(size=2000) is bigger
    caplog.set_level(logging.INFO, logger="sweeplab.warm")
    model_id, _ = await trained(client)
    # When a batch holds one such image
    status, body = await predict(client, model_id, png_bytes(1), png_bytes(2, size=2000),
                                 png_bytes(3))
    # Then it was sent to two processes, each died, and it and the rest were answered cold
    assert status == 200, body
    answers = body["predictions"]
    assert [p["output"]["mode"] for p in answers] == ["warm", "cold", "cold"]
    first, _ = warm_starts(caplog)
    assert answers[0]["output"]["pid"] == first
    assert [p["name"] for p in answers] == ["digit-0.png", "digit-1.png", "digit-2.png"]
    assert client.app[WARM_POOL].pids() == {}


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
    assert body["error"]["message"] == ("image at index 1 of 3 ('digit-1.png'): the test script "
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
