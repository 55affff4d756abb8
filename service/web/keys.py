"""Typed keys for everything the app keeps in its state."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import dramatiq
from aiohttp import web

from service.dispatch.probe import BrokerProbe
from service.predict.warm import WarmPool
from service.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
BROKER = web.AppKey("broker", dramatiq.Broker)
# Peewee and Pillow block: they run in this pool, never on the event loop.
DB_EXECUTOR = web.AppKey("db_executor", ThreadPoolExecutor)
# pika is blocking and its connection belongs to one thread: every publish goes through here.
PUBLISH_EXECUTOR = web.AppKey("publish_executor", ThreadPoolExecutor)
# /healthz's one kept connection to RabbitMQ
BROKER_PROBE = web.AppKey("broker_probe", BrokerProbe)
WARM_POOL = web.AppKey("warm_pool", WarmPool)
