"""Every route of the API, one line each: the first file to open to find any behaviour."""

from __future__ import annotations

from aiohttp import web

from service.web import client_wheel
from service.web.api import code, experiments, health, models, runs, worker, workers
from service.web.dashboard import actions, pages
from service.web.dashboard.setup import STATIC_DIR
from service.web.keys import SETTINGS

ID = r"{id:[0-9]{1,18}}"  # ASCII only: \d would take Unicode digits
SHA = r"{sha:[0-9a-f]{64}}"
VERSION = r"{version:[0-9a-f]{64}}"  # a code version: the SHA-256 of its tree


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/api/v1/openapi.json", health.openapi)
    app.router.add_post("/api/v1/models", models.create)
    app.router.add_get("/api/v1/models", models.list_all)
    app.router.add_get(f"/api/v1/models/{ID}", models.show)
    app.router.add_delete(f"/api/v1/models/{ID}", models.delete)
    app.router.add_post(f"/api/v1/models/{ID}/images", models.upload_images)
    app.router.add_delete(f"/api/v1/models/{ID}/images/{SHA}", models.delete_image)
    app.router.add_post(f"/api/v1/models/{ID}/code", code.upload)
    app.router.add_get(f"/api/v1/models/{ID}/code", code.list_all)
    app.router.add_get(f"/api/v1/models/{ID}/code/{VERSION}", code.show)
    app.router.add_get(f"/api/v1/models/{ID}/best", models.best)
    app.router.add_post(f"/api/v1/models/{ID}/predict", models.predict)
    app.router.add_post(f"/api/v1/models/{ID}/experiments", experiments.create)
    app.router.add_get(f"/api/v1/models/{ID}/experiments", experiments.list_for_model)
    app.router.add_get(f"/api/v1/experiments/{ID}", experiments.show)
    app.router.add_delete(f"/api/v1/experiments/{ID}", experiments.delete)
    app.router.add_get(f"/api/v1/experiments/{ID}/runs", experiments.runs)
    app.router.add_post(f"/api/v1/experiments/{ID}/start", experiments.start)
    app.router.add_post(f"/api/v1/experiments/{ID}/cancel", experiments.cancel)
    app.router.add_post(f"/api/v1/experiments/{ID}/retry", experiments.retry)
    app.router.add_get(f"/api/v1/runs/{ID}", runs.show)
    app.router.add_get(f"/api/v1/runs/{ID}/logs", runs.logs)
    app.router.add_get(f"/api/v1/runs/{ID}/metrics", runs.metrics)
    app.router.add_get("/api/v1/workers", workers.list_all)
    if app[SETTINGS].worker_token:  # without a worker token, the worker routes do not exist
        setup_worker_routes(app)
    app.router.add_get("/client/", client_wheel.index)  # the client's wheel: not under /api
    app.router.add_get(r"/client/{name:[A-Za-z0-9_.-]+\.whl}", client_wheel.wheel)
    setup_dashboard_routes(app)


def setup_worker_routes(app: web.Application) -> None:
    """For remote workers, with the worker token only (see service.web.middleware)."""
    app.router.add_post(f"/api/v1/worker/runs/{ID}/claim", worker.claim)
    app.router.add_post(f"/api/v1/worker/runs/{ID}/heartbeat", worker.renew)
    app.router.add_put(f"/api/v1/worker/runs/{ID}/folder", worker.folder)
    app.router.add_post(f"/api/v1/worker/runs/{ID}/result", worker.result)
    app.router.add_post(f"/api/v1/worker/runs/{ID}/requeue", worker.requeue)
    app.router.add_get(f"/api/v1/worker/experiments/{ID}/manifest",
                       worker.experiment_manifest)
    app.router.add_post("/api/v1/worker/images", worker.images)
    app.router.add_get(f"/api/v1/worker/code/{VERSION}", worker.code)
    app.router.add_post("/api/v1/worker/processes", workers.report)


def setup_dashboard_routes(app: web.Application) -> None:
    app.router.add_get("/", pages.index)
    app.router.add_post("/models", actions.create)
    app.router.add_get(f"/models/{ID}", pages.model)
    app.router.add_get(f"/models/{ID}/images/{SHA}", pages.thumbnail)
    app.router.add_post(f"/models/{ID}/upload", actions.upload)
    app.router.add_post(f"/models/{ID}/experiments", actions.new_experiment)
    app.router.add_post(f"/models/{ID}/predict", actions.predict)
    app.router.add_get(f"/experiments/{ID}", pages.experiment)
    app.router.add_get(f"/experiments/{ID}/live", pages.experiment_live)
    app.router.add_get(f"/experiments/{ID}/runs.csv", pages.experiment_csv)
    app.router.add_post(f"/experiments/{ID}/start", actions.start)
    app.router.add_post(f"/experiments/{ID}/cancel", actions.cancel)
    app.router.add_post(f"/experiments/{ID}/retry", actions.retry)
    app.router.add_get(f"/runs/{ID}", pages.run)
    app.router.add_get(f"/runs/{ID}/live", pages.run_live)
    app.router.add_get("/workers", pages.workers)
    app.router.add_get("/login", pages.login_form)
    app.router.add_post("/login", pages.login)
    app.router.add_post("/logout", pages.logout)
    app.router.add_static("/static/", STATIC_DIR)
