"""Shared fixtures: per-test settings and database, the Dramatiq stub broker and its worker,
an in-process API client, PostgreSQL databases, and end-to-end stacks (the API and workers as
real processes, tests/e2e_support.py). Helpers the tests import are in tests/helpers.py,
tests/api_support.py and tests/e2e_support.py; no test module imports another."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from queue import Queue

import peewee
import pytest

# The actors package reads its settings at import: point it at the stub broker before that.
os.environ["SWEEPLAB_BROKER_URL"] = "stub://"
os.environ.setdefault("SWEEPLAB_DATA_DIR", tempfile.mkdtemp(prefix="sweeplab-import-"))

from service.core.db import database, open_database  # noqa: E402
from service.migrate import apply_migrations  # noqa: E402
from service.settings import Settings, ensure_data_dirs, load_settings  # noqa: E402
from tests.e2e_support import FAKE_SCRIPTS, WORKER_TOKEN, Stack, VirtualHost  # noqa: E402
from tests.helpers import FAKE_PREDICT, FAKE_TRAIN  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get("SWEEPLAB_TEST_POSTGRES_URL",
                                    "postgresql://postgres@127.0.0.1:5432/postgres")


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


@pytest.fixture
def postgres_database() -> Iterator[list[str]]:
    """The URLs of two new, empty PostgreSQL databases, dropped after the test."""
    admin_url = POSTGRES_ADMIN_URL
    try:
        admin = peewee.PostgresqlDatabase(None)
        from playhouse.db_url import parse

        admin.init(**parse(admin_url))
        admin.connect()
    except peewee.OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL unreachable in CI at {admin_url}: {error}")
        pytest.skip(f"PostgreSQL unreachable at {admin_url}: {error}")
    names = [f"sweeplab_test_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        admin.execute_sql(f"CREATE DATABASE {name}")
    base = admin_url.rsplit("/", 1)[0]
    yield [f"{base}/{name}" for name in names]
    for name in names:
        admin.execute_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_client(request, aiohttp_client, tmp_path, stub_broker):
    """The API on a fresh SQLite file, or on a fresh PostgreSQL database."""
    from service.app import create_app

    overrides = {}
    if request.param == "postgresql":
        overrides["SWEEPLAB_DATABASE_URL"] = request.getfixturevalue("postgres_database")[0]
    settings = make_settings(tmp_path / "data", **overrides)
    open_database(settings.database_url)
    database.connect(reuse_if_open=True)
    apply_migrations()
    yield await aiohttp_client(create_app(settings, broker=stub_broker))
    database.close()


# --- end to end: real processes on the real RabbitMQ ---------------------------------------------

@pytest.fixture
def vhost_url() -> Iterator[str]:
    """The URL of a virtual host of its own on the local RabbitMQ, deleted after the test."""
    with VirtualHost() as url:
        yield url


@pytest.fixture
def cleanup() -> Iterator[ExitStack]:
    """Undone after the test, last in first out: stacks stop before what they use."""
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def make_stack(tmp_path: Path, cleanup: ExitStack) -> Callable[..., Stack]:
    """make_stack(broker_url=None, name="", worker=True, threads=2, processes=1, **env): the API
    and a worker on a virtual host of their own (or on `broker_url`), their data in
    tmp_path/name/data; stopped after the test."""
    def make(broker_url: str | None = None, name: str = "", worker: bool = True,
             threads: int = 2, processes: int = 1, **env: str) -> Stack:
        url = broker_url or cleanup.enter_context(VirtualHost())
        stack = Stack(tmp_path / name / "data", url, threads=threads, processes=processes, **env)
        cleanup.callback(stack.stop)
        stack.start_api()
        if worker:
            stack.start_worker()
        return stack

    return make


@pytest.fixture
def remote_stack(tmp_path: Path) -> Iterator[Stack]:
    """The API with a worker token; on its host, a worker of the aggregate queue only: runs are
    trained by remote workers (tests.e2e_support.start_remote_worker)."""
    with VirtualHost() as url:
        stack = Stack(tmp_path / "api-data", url, SWEEPLAB_WORKER_TOKEN=WORKER_TOKEN,
                      SWEEPLAB_LEASE_S="4", FAKE_TRAIN_SLEEP="0.3", **FAKE_SCRIPTS)
        stack.start_api()
        # the API's host consumes the aggregate queue only: training happens elsewhere
        stack.worker = stack._spawn([str(Path(sys.executable).parent / "dramatiq"), "actors",
                                     "--queues", "sweeplab_aggregate"], "aggregate.log")
        yield stack
        stack.stop()


# --- in parallel: scripts/test.sh runs pytest-xdist with `--dist loadfile` --------------------

# The files that take longest, started first so that none of them is the last to begin (the
# figures are in README, "Quick start"); the others follow in their usual order. loadfile keeps
# each file on one worker, in order: the boot test's steps build on one machine, and the module
# fixtures (a live stack, a browser, an initialised Terraform) and test_fuzz's request count are
# made once.
LONG_POLES = ("tests/test_boot.py", "tests/test_bench.py", "tests/test_remote_workers.py",
              "tests/test_browser.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def start_order(item: pytest.Item) -> int:
        module = item.nodeid.split("::")[0]
        return LONG_POLES.index(module) if module in LONG_POLES else len(LONG_POLES)

    items.sort(key=start_order)  # stable: each file's tests keep their order


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """loadfile, except that tests sharing one node id (schemathesis gives the 25 operations of
    a fuzz test the same) are all run: xdist's loadfile keys its work by node id and would run
    one of each and drop the rest without a word."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class DistinctLoadFile(LoadFileScheduling):
        def add_node_collection(self, node: object, collection: Sequence[str]) -> None:
            seen: Counter[str] = Counter()
            distinct = []
            for nodeid in collection:  # the n-th repeat becomes "nodeid#n", in the same file
                seen[nodeid] += 1
                distinct.append(nodeid if seen[nodeid] == 1 else f"{nodeid}#{seen[nodeid]}")
            super().add_node_collection(node, distinct)

    return DistinctLoadFile(config, log)
