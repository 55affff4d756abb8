"""Shared fixtures: per-test settings and database, the Dramatiq stub broker and its worker,
and an in-process API client. End-to-end fixtures live in tests/e2e_support.py."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from queue import Queue

import pytest

# The actors package reads its settings at import: point it at the stub broker before that.
os.environ["SWEEPLAB_BROKER_URL"] = "stub://"
os.environ.setdefault("SWEEPLAB_DATA_DIR", tempfile.mkdtemp(prefix="sweeplab-import-"))

from service.core.db import database, open_database  # noqa: E402
from service.migrate import apply_migrations  # noqa: E402
from service.settings import Settings, ensure_data_dirs, load_settings  # noqa: E402

TESTS = Path(__file__).resolve().parent
FAKE_TRAIN = TESTS / "scripts" / "fake_train.py"
FAKE_PREDICT = TESTS / "scripts" / "fake_predict.py"


def make_settings(data_dir: Path, **overrides: str) -> Settings:
    env = {
        "SWEEPLAB_DATA_DIR": str(data_dir),
        "SWEEPLAB_BROKER_URL": "stub://",
        "SWEEPLAB_TRAIN_SCRIPT": str(FAKE_TRAIN),
        "SWEEPLAB_TEST_SCRIPT": str(FAKE_PREDICT),
        "SWEEPLAB_PYTHON": sys.executable,
        "SWEEPLAB_LEASE_S": "5",
        **overrides,
    }
    return load_settings(env)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "data")
    ensure_data_dirs(settings)
    return settings


@pytest.fixture
def db(settings: Settings):
    open_database(settings.database_url)
    database.connect(reuse_if_open=True)
    apply_migrations()
    yield database
    database.close()


@pytest.fixture
def stub_broker(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    import actors
    from actors.context import WorkerContext
    from actors.stores.local import LocalStore

    monkeypatch.setattr("actors.context._context", WorkerContext(settings, LocalStore(settings)))
    actors.broker.flush_all()
    # Fresh queues too: a message an earlier test's worker took and never finished (it was
    # stopped mid-run) stays counted as unfinished, and broker.join() would wait forever.
    for name in list(actors.broker.queues):
        actors.broker.queues[name] = Queue()
    yield actors.broker
    actors.broker.flush_all()


@pytest.fixture
def stub_worker(stub_broker, db):
    from dramatiq import Worker

    worker = Worker(stub_broker, worker_timeout=100, worker_threads=4)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
async def client(aiohttp_client, settings: Settings, stub_broker):
    from service.app import create_app

    return await aiohttp_client(create_app(settings, broker=stub_broker))
