"""`/healthz` against the real RabbitMQ: cheap (one kept connection) and quiet."""

from __future__ import annotations

import logging

import pytest

from service.app import create_app
from service.web.keys import BROKER_PROBE
from tests.conftest import make_settings
from tests.e2e_support import rabbitmqctl

pytestmark = pytest.mark.e2e


async def test_health_checks_keep_one_connection_and_log_nothing(aiohttp_client, tmp_path,
                                                                   vhost_url, stub_broker,
                                                                   caplog):
    settings = make_settings(tmp_path / "data", SWEEPLAB_BROKER_URL=vhost_url)
    app = create_app(settings, broker=stub_broker)
    client = await aiohttp_client(app)
    assert (await client.get("/healthz")).status == 200
    connection = app[BROKER_PROBE].connection
    caplog.clear()
    with caplog.at_level(logging.INFO):
        for _ in range(20):
            response = await client.get("/healthz")
            assert (response.status, (await response.json())["broker"]) == (200, "ok")
    assert app[BROKER_PROBE].connection is connection
    assert [r for r in caplog.records if r.name.startswith("pika")] == []


async def test_a_kept_connection_lost_between_checks_is_replaced(aiohttp_client, tmp_path,
                                                                 vhost_url, stub_broker):
    settings = make_settings(tmp_path / "data", SWEEPLAB_BROKER_URL=vhost_url)
    app = create_app(settings, broker=stub_broker)
    client = await aiohttp_client(app)
    assert (await client.get("/healthz")).status == 200
    # as when a missed heartbeat made RabbitMQ close it while nobody asked
    rabbitmqctl("close_all_connections", "--vhost", vhost_url.rsplit("/", 1)[1], "a test")
    response = await client.get("/healthz")
    assert (response.status, (await response.json())["broker"]) == (200, "ok")
