"""The worker routes through the in-process client: who may call them, and what a wrong call
gets (a clear error, nothing recorded); and the snapshot cache refusing bytes that do not match
their hash."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import threading
from pathlib import Path

import aiohttp
import pytest

from actors.stores.snapshot_cache import CorruptImage, SnapshotCache
from service.contract import RunStatus
from service.core.tables import Experiment, Run, RunEvent
from service.web.api.worker import TAR_GROUP_BYTES
from service.web.keys import SETTINGS
from service.workers import remote as workerapi
from tests.api_support import started_run
from tests.conftest import make_settings
from tests.helpers import tar_gz_bytes

WORKER = {"Authorization": "Bearer w-token"}
USER = {"Authorization": "Bearer u-token"}


@pytest.fixture
async def api(aiohttp_client, tmp_path, stub_broker, db):
    from service.app import create_app

    settings = make_settings(tmp_path / "data", SWEEPLAB_WORKER_TOKEN="w-token",
                             SWEEPLAB_API_TOKEN="u-token", SWEEPLAB_MAX_RUN_FOLDER_BYTES="16384")
    client = await aiohttp_client(create_app(settings, broker=stub_broker))
    client.session.headers.update(USER)
    return client


async def claimed_run(client) -> int:
    _, run_id = await started_run(client)
    claimed = await client.post(f"/api/v1/worker/runs/{run_id}/claim", json={"worker": "h:1"},
                                headers=WORKER)
    assert (claimed.status, (await claimed.json())["outcome"]) == (200, "claimed")
    return run_id


async def test_without_a_worker_token_the_worker_routes_do_not_exist(client, db):
    response = await client.post("/api/v1/worker/runs/1/claim", json={"worker": "h:1"})
    assert response.status == 404


async def test_only_the_worker_token_opens_the_worker_routes_and_nothing_else(api):
    _, run_id = await started_run(api)
    url = f"/api/v1/worker/runs/{run_id}/claim"
    for headers in ({"Authorization": ""}, USER, {"Authorization": "Bearer nope"}):
        response = await api.post(url, json={"worker": "h:1"}, headers=headers)
        assert response.status == 401
        assert "SWEEPLAB_WORKER_TOKEN" in (await response.json())["error"]["message"]
    assert (await api.get("/api/v1/models", headers=WORKER)).status == 401
    assert Run.get_by_id(run_id).status == "queued"


async def test_an_unknown_run_is_a_clear_404(api):
    for path, body in (("claim", {"worker": "h:1"}), ("heartbeat", {"attempt": 1}),
                       ("result", {"attempt": 1, "worker": "h:1", "status": "failed"}),
                       ("requeue", {"attempt": 1, "worker": "h:1"})):
        response = await api.post(f"/api/v1/worker/runs/999/{path}", json=body, headers=WORKER)
        assert response.status == 404, path
        assert (await response.json())["error"]["message"] == "run 999 does not exist"
    assert RunEvent.select().count() == 0


async def test_a_result_needs_its_folder_first_and_a_late_attempt_changes_nothing(api):
    run_id = await claimed_run(api)
    result = {"attempt": 1, "worker": "h:1", "status": "succeeded", "accuracy": 0.9, "value": 0.9}
    early = await api.post(f"/api/v1/worker/runs/{run_id}/result", json=result,
                           headers=WORKER)
    assert early.status == 409 and "run folder" in (await early.json())["error"]["message"]
    stale = await api.put(f"/api/v1/worker/runs/{run_id}/folder?attempt=7", data=tar_gz_bytes({}),
                          headers=WORKER)
    assert stale.status == 409
    sent = await api.put(f"/api/v1/worker/runs/{run_id}/folder?attempt=1",
                         data=tar_gz_bytes({"model.txt": b"weights"}), headers=WORKER)
    assert sent.status == 204
    done = await api.post(f"/api/v1/worker/runs/{run_id}/result", json=result, headers=WORKER)
    assert (await done.json()) == {"recorded": True}
    again = await api.post(f"/api/v1/worker/runs/{run_id}/result", json=result, headers=WORKER)
    assert (await again.json()) == {"recorded": False}
    assert Run.get_by_id(run_id).accuracy == 0.9
    assert RunEvent.select().where(RunEvent.to_status == "succeeded").count() == 1


def one_request(tmp_path: Path, run_dir: Path, outcome: dict) -> tuple[bytes, dict]:
    """The result request exactly as the remote worker builds it: outcome and folder."""
    from actors.stores.rest import write_result_request

    body = io.BytesIO()
    files = sorted(path for path in run_dir.rglob("*") if path.is_file())
    write_result_request(body, "b0undary", run_dir, files, outcome)
    return body.getvalue(), {
        **WORKER, "Content-Type": "multipart/form-data; boundary=b0undary"}


async def test_the_outcome_and_the_folder_in_one_request(api, tmp_path):
    run_id = await claimed_run(api)
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "model" / "weights.txt").write_bytes(b"weights")
    result = {"attempt": 1, "worker": "h:1", "status": "succeeded", "accuracy": 0.9, "value": 0.9}
    url = f"/api/v1/worker/runs/{run_id}/result"
    stale, headers = one_request(tmp_path, run_dir, {**result, "attempt": 7})
    assert (await api.post(url, data=stale, headers=headers)).status == 409
    body, headers = one_request(tmp_path, run_dir, result)
    done = await api.post(url, data=body, headers=headers)
    assert (await done.json()) == {"recorded": True}
    kept = Path(api.server.app[SETTINGS].runs_dir) / str(run_id) / "model" / "weights.txt"
    assert kept.read_bytes() == b"weights"
    again = await api.post(url, data=body, headers=headers)
    assert again.status == 409  # that attempt is over: its folder is not taken again
    assert Run.get_by_id(run_id).accuracy == 0.9
    assert RunEvent.select().where(RunEvent.to_status == "succeeded").count() == 1


async def test_a_one_request_result_arriving_in_small_pieces_is_read_whole(api, tmp_path):
    run_id = await claimed_run(api)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "stderr.log").write_bytes(b"Traceback ...\n" * 100)
    error = "ValueError: " + "x" * 15_000  # a long error: the outcome part spans many pieces
    body, headers = one_request(tmp_path, run_dir, {"attempt": 1, "worker": "h:1",
                                                    "status": "failed", "error": error})

    async def in_pieces():  # sent chunked, 512 bytes at a time, as a slow link delivers it
        for start in range(0, len(body), 512):
            yield body[start:start + 512]
            await asyncio.sleep(0.002)

    done = await api.post(f"/api/v1/worker/runs/{run_id}/result", data=in_pieces(),
                          headers=headers)
    assert (await done.json()) == {"recorded": True}
    assert Run.get_by_id(run_id).error == error


async def test_a_larger_folder_in_one_request_is_spooled_to_disk_first(api, tmp_path,
                                                                        monkeypatch):
    from service.web.api import worker

    monkeypatch.setattr(worker, "SMALL_FOLDER", 1024)  # past this, not unpacked from memory
    run_id = await claimed_run(api)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    weights = os.urandom(3000)  # a tar of about 10 KiB: past 1 KiB, within the 16 KiB limit
    (run_dir / "weights.bin").write_bytes(weights)
    body, headers = one_request(tmp_path, run_dir, {"attempt": 1, "worker": "h:1",
                                                    "status": "failed", "error": "boom"})
    done = await api.post(f"/api/v1/worker/runs/{run_id}/result", data=body, headers=headers)
    assert (await done.json()) == {"recorded": True}
    kept = Path(api.server.app[SETTINGS].runs_dir) / str(run_id) / "weights.bin"
    assert kept.read_bytes() == weights
    assert Run.get_by_id(run_id).error == "boom"


async def test_a_one_request_result_that_is_wrong_changes_nothing(api, tmp_path):
    run_id = await claimed_run(api)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "big.bin").write_bytes(os.urandom(20_000))
    url = f"/api/v1/worker/runs/{run_id}/result"
    bad, headers = one_request(tmp_path, run_dir, {"attempt": 1, "worker": "h:1",
                                                   "status": "won"})
    response = await api.post(url, data=bad, headers=headers)
    assert (response.status, (await response.json())["error"]["field"]) == (422, "status")
    form = aiohttp.FormData()
    form.add_field("folder", b"x", filename="folder.tar", content_type="application/x-tar")
    response = await api.post(url, data=form, headers=WORKER)  # the outcome must come first
    assert (response.status, (await response.json())["error"]["field"]) == (400, "outcome")
    cut = await api.post(url, data=b"--b0undary\r\nContent-Disp", headers={
        **WORKER, "Content-Type": "multipart/form-data; boundary=b0undary"})
    assert cut.status == 400
    assert Run.get_by_id(run_id).status == "running"
    large, headers = one_request(tmp_path, run_dir, {"attempt": 1, "worker": "h:1",
                                                     "status": "failed"})
    response = await api.post(url, data=large, headers=headers)
    assert response.status == 413
    run = Run.get_by_id(run_id)
    assert run.status == "failed" and "SWEEPLAB_MAX_RUN_FOLDER_BYTES" in run.error


async def test_a_folder_past_the_limit_fails_the_run_saying_why(api):
    run_id = await claimed_run(api)
    response = await api.put(f"/api/v1/worker/runs/{run_id}/folder?attempt=1",
                             data=tar_gz_bytes({"model.bin": os.urandom(20_000)}), headers=WORKER)
    assert response.status == 413
    run = Run.get_by_id(run_id)
    assert run.status == "failed" and "SWEEPLAB_MAX_RUN_FOLDER_BYTES" in run.error


async def test_a_folder_with_links_or_escapes_is_refused(api):
    run_id = await claimed_run(api)
    response = await api.put(f"/api/v1/worker/runs/{run_id}/folder?attempt=1",
                             data=tar_gz_bytes({"../evil": b"x"}), headers=WORKER)
    assert response.status == 422
    assert Run.get_by_id(run_id).status == "running"


async def test_bad_result_bodies_name_the_field(api):
    run_id = await claimed_run(api)
    for body, field in (({"attempt": 1, "worker": "h:1", "status": "won"}, "status"),
                        ({"attempt": -1, "worker": "h:1", "status": "failed"}, "attempt"),
                        ({"attempt": 1, "worker": "h:1", "status": "succeeded"}, "value"),
                        ({"attempt": 1, "worker": "h:1", "status": "failed", "x": 1}, "x")):
        response = await api.post(f"/api/v1/worker/runs/{run_id}/result", json=body,
                                  headers=WORKER)
        assert (response.status, (await response.json())["error"]["field"]) == (422, field)


async def test_the_manifest_and_images_travel_by_content(api, tmp_path):
    _, run_id = await started_run(api)
    experiment_id = Run.get_by_id(run_id).experiment_id
    manifest = await (await api.get(f"/api/v1/worker/experiments/{experiment_id}/manifest",
                                     headers=WORKER)).json()
    assert sorted(item["label"] for item in manifest["images"]) == ["1"] * 3 + ["2"] * 3
    fetched = await api.post("/api/v1/worker/images", json={"images": manifest["images"]},
                             headers=WORKER)
    with tarfile.open(fileobj=io.BytesIO(await fetched.read())) as tar:
        names = sorted(tar.getnames())
    assert names == sorted(f"{i['sha256']}.{i['extension']}" for i in manifest["images"])


async def test_the_images_route_looks_at_its_files_off_the_event_loop(api, monkeypatch):
    # Given a worker about to fetch an experiment's images, and each look at an image file
    # recorded with whether it ran on the event loop (which meanwhile serves every request)
    _, run_id = await started_run(api)
    experiment_id = Run.get_by_id(run_id).experiment_id
    manifest = await (await api.get(f"/api/v1/worker/experiments/{experiment_id}/manifest",
                                     headers=WORKER)).json()
    images_dir, loop_thread = api.server.app[SETTINGS].images_dir, threading.get_ident()
    looked: list[tuple[str, bool]] = []
    real_stat = Path.stat

    def recording_stat(self: Path, *args, **kwargs):
        if self.is_relative_to(images_dir):
            looked.append((self.name, threading.get_ident() == loop_thread))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", recording_stat)
    # When it fetches them
    fetched = await api.post("/api/v1/worker/images", json={"images": manifest["images"]},
                             headers=WORKER)
    await fetched.read()
    monkeypatch.undo()
    # Then every file was looked at, none of them on the event loop
    assert fetched.status == 200
    assert {name for name, _ in looked} == {f"{i['sha256']}.{i['extension']}"
                                            for i in manifest["images"]}
    assert [name for name, on_loop in looked if on_loop] == []


async def test_an_image_too_big_for_a_group_comes_whole_and_a_missing_one_is_named(api):
    # Given an image store holding a small image and one larger than a tar group
    images_dir = api.server.app[SETTINGS].images_dir
    small, big, gone = "a" * 64, "b" * 64, "c" * 64
    big_bytes = os.urandom(TAR_GROUP_BYTES + 1)
    for sha, data in ((small, b"small"), (big, big_bytes)):
        (images_dir / sha[:2]).mkdir(parents=True, exist_ok=True)
        (images_dir / sha[:2] / f"{sha}.png").write_bytes(data)
    wanted = [{"sha256": sha, "extension": "png"} for sha in (small, big)]
    # When a worker fetches them, then them and one the store does not hold
    fetched = await api.post("/api/v1/worker/images", json={"images": wanted}, headers=WORKER)
    missing = await api.post("/api/v1/worker/images", headers=WORKER,
                             json={"images": [*wanted, {"sha256": gone, "extension": "png"}]})
    # Then each image comes whole, in order; and the missing one is named, nothing sent
    with tarfile.open(fileobj=io.BytesIO(await fetched.read())) as tar:
        contents = [(member.name, tar.extractfile(member).read()) for member in tar]
    assert contents == [(f"{small}.png", b"small"), (f"{big}.png", big_bytes)]
    assert missing.status == 422
    assert (await missing.json())["error"] == {"code": "invalid", "field": "images",
                                               "message": f"no stored image {gone}.png"}


def test_the_cache_refuses_bytes_that_do_not_match_their_hash(tmp_path: Path):
    sha = "a" * 64
    manifest = [{"sha256": sha, "extension": "png", "label": "1"}]
    tampered = tar_gz_bytes({f"{sha}.png": b"tampered"}, mode="w")  # as the API sends it
    cache = SnapshotCache(tmp_path, lambda _: manifest, lambda _: iter([io.BytesIO(tampered)]))
    with pytest.raises(CorruptImage, match="other bytes"):
        cache.snapshot(1)
    assert [path for path in (tmp_path / "cache").rglob("*") if path.is_file()] == []
    assert not (tmp_path / "snapshots" / "1").exists()


async def test_folders_are_checked_by_our_own_rules_and_written_as_plain_files(api, settings):
    # Our checks are the guard (no tarfile filter: Debian 12's Python 3.11.2 has none, and
    # its real-path checks cost more than the rest of a result): outside paths, links and a
    # name sent twice are refused; plain files and folders are written as they are.
    run_id = await claimed_run(api)
    for refused in (tar_gz_bytes({"../evil": b"x"}), tar_gz_bytes({"/abs": b"x"}),
                    tar_gz_bytes({}, links={"link": "/etc/passwd"}),
                    _twice("a.txt")):
        escape = await api.put(f"/api/v1/worker/runs/{run_id}/folder?attempt=1",
                               data=refused, headers=WORKER)
        assert escape.status == 422, await escape.text()
    kept = await api.put(f"/api/v1/worker/runs/{run_id}/folder?attempt=1",
                         data=tar_gz_bytes({"model.txt": b"w", "deep/er/w.bin": b"123"}),
                         headers=WORKER)
    assert kept.status == 204
    folder = settings.runs_dir / str(run_id)
    assert (folder / "model.txt").read_bytes() == b"w"
    assert (folder / "deep/er/w.bin").read_bytes() == b"123"
    assert not (settings.runs_dir.parent / "evil").exists()


def _twice(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for data in (b"first", b"second"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("in_memory_limit, from_file", [(1 << 20, False), (10, True)])
def test_the_worker_sends_a_small_folder_from_memory_and_a_large_one_from_a_file(
        tmp_path, monkeypatch, in_memory_limit, from_file):
    from types import SimpleNamespace

    from actors.stores import rest as rest_store
    from actors.stores.base import RunSpec
    from service.execution.training import Outcome
    from service.settings import load_settings

    store = rest_store.RestStore(load_settings({
        "SWEEPLAB_DATA_DIR": str(tmp_path / "host"), "SWEEPLAB_API_URL": "http://127.0.0.1:9",
        "SWEEPLAB_WORKER_TOKEN": "w-token"}))
    sent = []

    def fake_call(method: str, path: str, **kwargs) -> SimpleNamespace:
        data = kwargs["data"]
        sent.append((path, hasattr(data, "read"), data.read() if hasattr(data, "read") else data))
        return SimpleNamespace(json=lambda: {"recorded": True})

    monkeypatch.setattr(store, "call", fake_call)
    monkeypatch.setattr(rest_store, "IN_MEMORY_FOLDER", in_memory_limit)
    run_dir = store.run_dir(5)
    run_dir.mkdir(parents=True)
    (run_dir / "model.bin").write_bytes(b"w" * 100)
    outcome = Outcome(RunStatus.FAILED, error="boom", exit_code=1)
    assert store.finish(RunSpec(5, 1, 0.1, 1, 1, 60.0), 1, "h:1", outcome) is True
    [(path, was_file, body)] = sent
    assert path == "/runs/5/result" and was_file is from_file
    assert b'"error": "boom"' in body and b"model.bin" in body and b"w" * 100 in body
    assert list(run_dir.parent.iterdir()) == []  # the folder and any spooled body are gone


REFUSED_401 = ("the API at http://api.test:8080 answers 401 to SWEEPLAB_WORKER_TOKEN: the token "
               "is wrong, or the API's was changed")
NO_ROUTES = ("the API at http://api.test:8080 has no worker routes: set SWEEPLAB_WORKER_TOKEN on "
             "the API's host too")
UNREACHABLE = ("cannot reach the API at http://api.test:8080 (SWEEPLAB_API_URL): [Errno 111] "
               "Connection refused")


@pytest.mark.parametrize(("answer", "message", "heard"), [
    (401, REFUSED_401, True), (404, NO_ROUTES, True), ("refused", UNREACHABLE, False)])
def test_a_report_the_api_refuses_or_cannot_take_says_why_and_a_refusal_is_heard(
        tmp_path, monkeypatch, answer, message, heard):
    import requests

    from actors.stores import rest as rest_store
    from actors.stores.base import StoreUnreachable, WorkerRefused
    from service.settings import load_settings

    heard_of: list[str] = []
    store = rest_store.RestStore(load_settings({
        "SWEEPLAB_DATA_DIR": str(tmp_path / "host"), "SWEEPLAB_API_URL": "http://api.test:8080",
        "SWEEPLAB_WORKER_TOKEN": "w-token"}), on_refused=heard_of.append)

    def request(method: str, url: str, **kwargs) -> requests.Response:
        assert (method, url) == ("POST", "http://api.test:8080/api/v1/worker/processes")
        if answer == "refused":  # requests' words for it, wrapped as urllib3 wraps them
            raise requests.ConnectionError(
                "HTTPConnectionPool(host='api.test', port=8080): Max retries exceeded with url: "
                "/api/v1/worker/processes (Caused by NewConnectionError(\"HTTPConnection(host="
                "'api.test', port=8080): Failed to establish a new connection: [Errno 111] "
                "Connection refused\"))")
        response = requests.Response()
        response.status_code, response._content = answer, b'{"error": {"message": "no"}}'
        return response

    monkeypatch.setattr(store._session(), "request", request)
    with pytest.raises(WorkerRefused if heard else StoreUnreachable) as failed:
        store.report_worker({"name": "h:1"})
    assert str(failed.value) == message
    assert heard_of == ([message] if heard else [])


async def test_a_result_whose_experiment_was_deleted_meanwhile_is_not_recorded(api, monkeypatch):
    """The experiment (and with it the run) deleted between the result's reading of its run and
    of its experiment: nothing to record, and no curve read for a metric nobody names."""
    run_id = await claimed_run(api)
    folder = tar_gz_bytes({"stdout.log": b"step: 1 accuracy: 0.5\n"})
    sent = await api.put(f"/api/v1/worker/runs/{run_id}/folder?attempt=1", data=folder,
                         headers=WORKER)
    assert sent.status == 204
    read_run = workerapi._existing

    def run_then_deleted(read_id: int) -> Run:
        run = read_run(read_id)
        Experiment.delete().where(Experiment.id == run.experiment_id).execute()
        return run

    monkeypatch.setattr(workerapi, "_existing", run_then_deleted)
    result = {"attempt": 1, "worker": "h:1", "status": "succeeded", "accuracy": 0.5, "value": 0.5}
    done = await api.post(f"/api/v1/worker/runs/{run_id}/result", json=result, headers=WORKER)
    assert (done.status, await done.json()) == (200, {"recorded": False})
    assert Run.get_or_none(Run.id == run_id) is None
