"""The store of a remote worker: the API's worker routes, over HTTP, with the worker token.

It never opens the database nor reads the API's data directory; its own data directory holds
the image cache and its runs' folders. Calls that must not be lost (the outcome, the folder,
a requeue) are retried with backoff until the API takes them or refuses them: a restarting API
costs a wait, never a result.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import requests

from actors.stores.base import (
    CodeUnusable,
    Refused,
    RunStore,
    StoreUnreachable,
    WorkerRefused,
)
from actors.stores.code_cache import CodeCache
from actors.stores.snapshot_cache import Manifest, SnapshotCache
from service.contract import Claim, ClaimOutcome, Outcome, RunSpec
from service.execution.training import STDERR_NAME, STDOUT_NAME
from service.settings import Settings

log = logging.getLogger("sweeplab.rest_store")
TIMEOUT_S = 30
MAX_LOG_CHUNK = 256 * 1024
IN_MEMORY_FOLDER = 1 << 20  # a run folder this small is sent from memory
GIVE_UP_AFTER_S = 24 * 3600  # a finished run's result waits this long for the API at most
STREAMS = {"stdout": STDOUT_NAME, "stderr": STDERR_NAME}


class RestStore(RunStore):
    def __init__(self, settings: Settings,
                 on_refused: Callable[[str], None] = lambda problem: None) -> None:
        assert settings.api_url and settings.worker_token
        self.settings = settings
        self.on_refused = on_refused
        self.base = f"{settings.api_url}/api/v1/worker"
        self.headers = {"Authorization": f"Bearer {settings.worker_token}"}
        self.local = threading.local()
        self.sent: dict[tuple[int, int], dict[str, int]] = {}  # log bytes the API has
        self.cache = SnapshotCache(settings.data_dir, self._manifest, self._images)
        self.code = CodeCache(settings.code_dir, self._code)

    def _session(self) -> requests.Session:
        if not hasattr(self.local, "session"):  # a Session is not safe across threads
            self.local.session = requests.Session()
            self.local.session.headers.update(self.headers)
        return self.local.session

    def call(self, method: str, path: str, timeout: float = TIMEOUT_S,
             **kwargs: Any) -> requests.Response:
        """One request; StoreUnreachable when the API cannot answer, Refused on a 4xx
        (WorkerRefused on a 401, which `on_refused` hears of too, wherever it was caught)."""
        try:
            response = self._session().request(method, self.base + path, timeout=timeout,
                                               **kwargs)
        except requests.RequestException as error:
            raise StoreUnreachable(f"{method} {path}: {error}") from error
        if response.status_code >= 500:
            raise StoreUnreachable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code == 401:
            raise self._refused(f"the API at {self.settings.api_url} answers 401 to "
                                f"SWEEPLAB_WORKER_TOKEN: the token is wrong, or the API's was "
                                f"changed")
        if response.status_code >= 400:
            raise Refused(response.status_code, _message(response))
        return response

    def patiently(self, method: str, path: str, body: Path | None = None,
                  **kwargs: Any) -> requests.Response:
        """`call`, retried with backoff while the API is unreachable (a file `body` is sent
        afresh each time)."""
        delay, deadline = 0.5, time.monotonic() + GIVE_UP_AFTER_S
        while True:
            try:
                if body is None:
                    return self.call(method, path, **kwargs)
                with open(body, "rb") as data:
                    return self.call(method, path, data=data, **kwargs)
            except StoreUnreachable as error:
                if time.monotonic() > deadline:
                    raise
                log.warning("API unreachable (%s); trying again in %.1f s", error, delay)
                time.sleep(delay)
                # never longer than a third of a lease: once the API is back, a finished
                # run's result must reach it before the run is taken for silent
                delay = min(delay * 2, max(0.5, self.settings.lease_s / 3))

    def claim(self, run_id: int, worker: str, lease_s: float) -> tuple[Claim, RunSpec | None]:
        try:
            body = self.call("POST", f"/runs/{run_id}/claim", json={"worker": worker}).json()
        except Refused as error:
            if error.status != 404:
                raise
            return Claim(ClaimOutcome.GONE), None  # deleted with its model: nothing to do
        spec = RunSpec(**body["run"]) if body["run"] else None
        return Claim(ClaimOutcome(body["outcome"]), body["attempt"], body["previous_worker"],
                     body["previous_pgid"]), spec

    def snapshot(self, spec: RunSpec) -> Path:
        return self.cache.snapshot(spec.experiment_id)

    def code_tree(self, spec: RunSpec) -> Path:
        assert spec.code is not None
        return self.code.tree(spec.code["version"])

    def run_dir(self, run_id: int) -> Path:
        return self.settings.runs_dir / str(run_id)

    def heartbeat(self, spec: RunSpec, attempt: int, child_pgid: int | None = None) -> bool:
        """Renew the lease, and send the output printed since the last time."""
        sent = self.sent.setdefault((spec.run_id, attempt), dict.fromkeys(STREAMS, 0))
        logs = self._new_output(self.run_dir(spec.run_id), sent)
        try:
            # A short wait: on a cut link a heartbeat must not outlast the lease it renews.
            body = self.call("POST", f"/runs/{spec.run_id}/heartbeat",
                             timeout=max(1.0, self.settings.lease_s / 3),
                             json={"attempt": attempt, "logs": logs}).json()
        except Refused as error:
            log.warning("run %s: heartbeat refused (%s)", spec.run_id, error)
            return False
        sent.update(body["logs"])
        return body["keep_going"]

    @staticmethod
    def _new_output(run_dir: Path, sent: dict[str, int]) -> dict[str, dict[str, Any]]:
        logs = {}
        for stream, name in STREAMS.items():
            try:
                with open(run_dir / name, "rb") as handle:
                    handle.seek(sent[stream])
                    data = handle.read(MAX_LOG_CHUNK)
            except FileNotFoundError:
                continue
            if data:
                logs[stream] = {"offset": sent[stream],
                                "data": base64.b64encode(data).decode()}
        return logs

    def finish(self, spec: RunSpec, attempt: int, worker: str, outcome: Outcome) -> bool:
        """Send the outcome and the folder in one request; the run counts only once both
        arrived (the API puts the folder in place, then records the outcome)."""
        self.sent.pop((spec.run_id, attempt), None)
        run_dir = self.run_dir(spec.run_id)
        files = [path for path in sorted(run_dir.rglob("*"))
                 if path.is_file() and not path.is_symlink()]
        # A folder of logs goes from memory; one with a model in it, through a file
        spooled = sum(path.stat().st_size for path in files) > IN_MEMORY_FOLDER
        request = run_dir.parent / f".{spec.run_id}-{attempt}.result"
        boundary = uuid.uuid4().hex
        outcome_json = {
            "attempt": attempt, "worker": worker, "status": outcome.status.value,
            "accuracy": outcome.accuracy, "value": outcome.value, "exit_code": outcome.exit_code,
            "error": outcome.error, "duration_s": outcome.duration_s,
            "script_sha256": outcome.script_sha256,
        }
        try:
            with open(request, "wb") if spooled else io.BytesIO() as body:
                write_result_request(body, boundary, run_dir, files, outcome_json)
                sent = ({"data": body.getvalue()} if isinstance(body, io.BytesIO)
                        else {"body": request})
            recorded = self.patiently(
                "POST", f"/runs/{spec.run_id}/result",
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}, **sent,
            ).json()["recorded"]
        except Refused as error:
            log.warning("run %s attempt %s: the API refused it (%s)", spec.run_id, attempt,
                        error)
            recorded = False
        finally:
            request.unlink(missing_ok=True)
        shutil.rmtree(run_dir, ignore_errors=True)  # it is on the API's host now, or moot
        return recorded

    def requeue(self, spec: RunSpec, attempt: int, worker: str) -> None:
        try:
            self.call("POST", f"/runs/{spec.run_id}/requeue",
                      json={"attempt": attempt, "worker": worker})
        except (StoreUnreachable, Refused) as error:
            # The lease runs out and the reconciler hands the run on all the same.
            log.warning("run %s: could not put it back (%s)", spec.run_id, error)

    def report_worker(self, info: dict[str, Any]) -> None:
        """The report, or an error that says in one line what is wrong and where (a remote
        worker whose first report fails refuses to start with it)."""
        url = self.settings.api_url
        try:
            self.call("POST", "/processes", json=info)
        except StoreUnreachable as error:
            raise StoreUnreachable(f"cannot reach the API at {url} (SWEEPLAB_API_URL): "
                                   f"{_reason(error)}") from error
        except Refused as error:
            if error.status != 404:
                raise
            # The worker routes exist only while the API has a worker token: without them
            # this worker can do nothing, as with a wrong token.
            raise self._refused(f"the API at {url} has no worker routes: set "
                                f"SWEEPLAB_WORKER_TOKEN on the API's host too") from error

    def _refused(self, problem: str) -> WorkerRefused:
        self.on_refused(problem)
        return WorkerRefused(problem)

    def _manifest(self, experiment_id: int) -> Manifest:
        return self.call("GET", f"/experiments/{experiment_id}/manifest").json()["images"]

    def _code(self, version: str) -> Iterator[IO[bytes]]:
        try:
            response = self.call("GET", f"/code/{version}", stream=True)
        except Refused as error:
            if error.status != 404:
                raise
            raise CodeUnusable(f"the API has no code version {version}") from None
        try:
            response.raw.decode_content = True
            yield response.raw
        finally:
            response.close()

    def _images(self, wanted: list[dict[str, str]]) -> Iterator[IO[bytes]]:
        response = self.call("POST", "/images", json={"images": wanted}, stream=True)
        try:
            response.raw.decode_content = True
            yield response.raw
        finally:
            response.close()


def write_result_request(body: IO[bytes], boundary: str, run_dir: Path, files: list[Path],
                         outcome: dict[str, Any]) -> None:
    """The result request's multipart body: the `outcome` part, then the `folder` part, an
    uncompressed tar of the run folder's `files`."""
    body.write(_part_head(boundary, 'name="outcome"', "application/json"))
    body.write(json.dumps(outcome).encode())
    body.write(b"\r\n" + _part_head(boundary, 'name="folder"; filename="folder.tar"',
                                     "application/x-tar"))
    with tarfile.open(fileobj=body, mode="w") as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(run_dir)), recursive=False)
    body.write(f"\r\n--{boundary}--\r\n".encode())


def _part_head(boundary: str, disposition: str, content_type: str) -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode()


def _reason(error: StoreUnreachable) -> str:
    """What went wrong, without the layers of wrappers requests puts around it: the last
    "[Errno N] ..." it names (connection refused, no such host), else its first 200 chars."""
    cause = error.__cause__
    if isinstance(cause, requests.Timeout):
        return "no answer in time"
    text = str(cause or error)
    found = re.findall(r"\[Errno -?\d+\] [^'\")]+", text)
    return found[-1].strip() if found else text[:200]


def _message(response: requests.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
