"""The app factory: `create_app(settings)`; no module-level app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import dramatiq
from aiohttp import web

from service.core.db import database, open_database
from service.core.timeutil import utcnow
from service.dispatch.broker import BrokerUnavailable, make_broker
from service.dispatch.probe import BrokerProbe
from service.dispatch.publish import reconcile
from service.migrate import apply_migrations
from service.predict.warm import WarmPool, reap_forever
from service.settings import Settings, ensure_data_dirs
from service.storage import clear_temp
from service.sweeps.removal import recover_trash, wait_for_removals
from service.web.dashboard.security import guard_pages
from service.web.dashboard.setup import setup_templates
from service.web.keys import (
    BROKER,
    BROKER_PROBE,
    DB_EXECUTOR,
    PUBLISH_EXECUTOR,
    SETTINGS,
    WARM_POOL,
)
from service.web.middleware import json_errors, require_token
from service.web.routes import setup_routes

DB_THREADS = 4
log = logging.getLogger("sweeplab.api")


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    ensure_data_dirs(settings)
    clear_temp(settings)  # leftovers of uploads cut off by a crash
    open_database(settings.database_url)
    executor = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="db")
    app[DB_EXECUTOR] = executor
    await asyncio.get_running_loop().run_in_executor(executor, _migrate, settings)
    yield
    executor.shutdown(wait=True)
    # deletions' folders still being removed: done before the database goes
    await asyncio.get_running_loop().run_in_executor(None, wait_for_removals)
    database.close()


def _migrate(settings: Settings) -> None:
    database.connect(reuse_if_open=True)
    apply_migrations()
    recover_trash(settings)  # what deletions cut off by a crash left


async def _broker(app: web.Application) -> AsyncIterator[None]:
    owned = BROKER not in app
    if owned:
        app[BROKER] = make_broker(app[SETTINGS].broker_url)
    executor = ThreadPoolExecutor(1, thread_name_prefix="publish")
    app[PUBLISH_EXECUTOR] = executor
    app[BROKER_PROBE] = BrokerProbe(app[SETTINGS].broker_url)
    yield
    await asyncio.get_running_loop().run_in_executor(None, app[BROKER_PROBE].close)
    if owned:  # the connection was opened in the publisher thread: close it there
        await asyncio.get_running_loop().run_in_executor(executor, app[BROKER].close)
    executor.shutdown(wait=True)


async def _reconciler(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_reconcile_forever(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _reconcile_forever(app: web.Application) -> None:
    settings = app[SETTINGS]
    loop = asyncio.get_running_loop()
    listening_since = utcnow()
    while True:
        try:
            await loop.run_in_executor(app[PUBLISH_EXECUTOR], reconcile, settings, app[BROKER],
                                       listening_since)
        except BrokerUnavailable:
            log.warning("reconciler: RabbitMQ unreachable; trying again in %g s",
                        reconcile_interval(settings))
        except Exception:  # a bad pass must not stop the loop; the next one may do better
            log.exception("reconciler pass failed")
        await asyncio.sleep(reconcile_interval(settings))


def reconcile_interval(settings: Settings) -> float:
    return max(0.5, min(10.0, settings.lease_s / 3))


async def _warm_pool(app: web.Application) -> AsyncIterator[None]:
    """The warm test scripts' pool for the app's life: idle processes reaped, every process
    stopped at the end."""
    pool = WarmPool(app[SETTINGS])
    app[WARM_POOL] = pool
    reaper = asyncio.create_task(reap_forever(pool, app[SETTINGS]))
    yield
    reaper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reaper
    await pool.close()


def create_app(settings: Settings, broker: dramatiq.Broker | None = None) -> web.Application:
    """The API for `settings`; `broker` replaces the one the settings name (tests pass a stub)."""
    # client_max_size bounds JSON bodies; uploads are streamed and bounded by our own limits.
    app = web.Application(middlewares=[json_errors, require_token, guard_pages],
                          client_max_size=1 << 20)
    app[SETTINGS] = settings
    if broker is not None:
        app[BROKER] = broker
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_broker)
    app.cleanup_ctx.append(_reconciler)
    app.cleanup_ctx.append(_warm_pool)  # warm test scripts: stopped when the API stops
    setup_templates(app)
    setup_routes(app)
    return app
