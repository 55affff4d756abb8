"""`SWEEPLAB_GPUS`: each worker thread owns one GPU; two runs never share one."""

from __future__ import annotations

import re

import pytest
from dramatiq import Worker

from actors import gpus
from actors.middleware import GpuPerThread
from service.core.tables import Run
from service.execution.training import STDOUT_NAME
from tests.api_support import make_model, upload_two_labels, wait_for_status


@pytest.fixture
def gpu_worker(stub_broker, db, monkeypatch):
    middleware = next(m for m in stub_broker.middleware if isinstance(m, GpuPerThread))
    monkeypatch.setattr(middleware, "gpu_ids", ("0", "1"))
    worker = Worker(stub_broker, worker_timeout=100, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()
    gpus.configure((), 0)


async def test_concurrent_runs_never_share_a_gpu(client, settings, gpu_worker, monkeypatch):
    # Given a worker with two threads and two GPUs, and scripts that print their environment
    monkeypatch.setenv("FAKE_TRAIN_MODE", "env")
    monkeypatch.setenv("FAKE_TRAIN_SLEEP", "0.4")
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    # When six runs go through it
    created = await client.post(f"/api/v1/models/{model_id}/experiments",
                                json={"grid": {"i": [0.1, 0.2, 0.3], "j": [1, 2], "k": [1]}})
    done = await wait_for_status(client, (await created.json())["id"], {"completed"})
    # Then each saw exactly one GPU, both GPUs were used, and overlapping runs had different ones
    seen = {}
    for run in done["runs"]:
        printed = (settings.runs_dir / str(run["id"]) / STDOUT_NAME).read_text()
        seen[run["id"]] = re.findall(r"CUDA_VISIBLE_DEVICES=(\S+)", printed)
    assert all(len(found) == 1 for found in seen.values()), seen
    assert {found[0] for found in seen.values()} == {"0", "1"}
    runs = list(Run.select())
    for a in runs:
        for b in runs:
            overlap = a.id < b.id and a.started_at < b.finished_at and b.started_at < a.finished_at
            if overlap:
                assert seen[a.id] != seen[b.id], (a.id, b.id)


def test_a_worker_with_more_threads_than_gpus_refuses_to_start():
    with pytest.raises(SystemExit, match="3 threads but only 2 GPU"):
        gpus.configure(("0", "1"), 3)


def test_without_gpus_scripts_see_what_the_host_has():
    gpus.configure((), 4)
    assert gpus.gpu_env() == {}
