"""The same service on PostgreSQL (by URL): a sweep through the stub worker, its failures,
a retry and the views, so that row locks, raw queries and migrations work there too."""

from __future__ import annotations

import pytest
from dramatiq import Worker

from actors.stores.local import LocalStore
from service.core.db import database, open_database
from service.migrate import apply_migrations
from tests.api_support import make_model, upload_two_labels, wait_for_status
from tests.conftest import make_settings


@pytest.fixture
def pg_client_parts(postgres_database, tmp_path, stub_broker, monkeypatch):
    from actors.context import WorkerContext

    url = postgres_database[0]
    settings = make_settings(tmp_path / "pg", SWEEPLAB_DATABASE_URL=url)
    monkeypatch.setattr("actors.context._context", WorkerContext(settings, LocalStore(settings)))
    open_database(url)
    database.connect(reuse_if_open=True)
    apply_migrations()
    worker = Worker(stub_broker, worker_timeout=100, worker_threads=4)
    worker.start()
    yield settings
    worker.stop()
    database.close()


async def test_a_sweep_with_failures_and_a_retry_on_postgresql(aiohttp_client, pg_client_parts,
                                                               stub_broker, monkeypatch):
    from service.app import create_app

    monkeypatch.setenv("FAKE_TRAIN_MODE", "fail_j4")
    client = await aiohttp_client(create_app(pg_client_parts, broker=stub_broker))
    model_id = await make_model(client)
    await upload_two_labels(client, model_id)
    created = await client.post(f"/api/v1/models/{model_id}/experiments",
                                json={"grid": {"i": [0.1, 0.2], "j": [1, 4], "k": [5]}})
    assert created.status == 201, await created.text()
    first = await wait_for_status(client, (await created.json())["id"], {"completed"})
    assert (first["counts"]["succeeded"], first["counts"]["failed"]) == (2, 2)
    assert all(run["started_at"].endswith("Z") for run in first["runs"])
    monkeypatch.setenv("FAKE_TRAIN_MODE", "ok")
    retried = await client.post(f"/api/v1/experiments/{first['id']}/retry")
    assert retried.status == 202
    done = await wait_for_status(client, first["id"], {"completed"})
    assert done["counts"]["succeeded"] == 4
    assert done["best"]["run_id"] == max(
        done["runs"], key=lambda run: (run["accuracy"], -run["id"]))["id"]
    model = await (await client.get(f"/api/v1/models/{model_id}")).json()
    assert model["best"] == done["best"]
    page = await client.get(f"/experiments/{first['id']}")
    assert page.status == 200
