"""Every route of the API, one line each: the first file to open to find any behaviour."""

from __future__ import annotations

from aiohttp import web

from service.dashboard import actions, pages
from service.dashboard.setup import STATIC_DIR
from service.handlers import experiments, health, models, runs

ID = r"{id:[0-9]{1,18}}"  # ASCII only: \d would take Unicode digits
SHA = r"{sha:[0-9a-f]{64}}"


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/api/v1/openapi.json", health.openapi)
    app.router.add_post("/api/v1/models", models.create)
    app.router.add_get("/api/v1/models", models.list_all)
    app.router.add_get(f"/api/v1/models/{ID}", models.show)
    app.router.add_delete(f"/api/v1/models/{ID}", models.delete)
    app.router.add_post(f"/api/v1/models/{ID}/images", models.upload_images)
    app.router.add_get(f"/api/v1/models/{ID}/best", models.best)
    app.router.add_post(f"/api/v1/models/{ID}/predict", models.predict)
    app.router.add_post(f"/api/v1/models/{ID}/experiments", experiments.create)
    app.router.add_get(f"/api/v1/models/{ID}/experiments", experiments.list_for_model)
    app.router.add_get(f"/api/v1/experiments/{ID}", experiments.show)
    app.router.add_post(f"/api/v1/experiments/{ID}/start", experiments.start)
    app.router.add_post(f"/api/v1/experiments/{ID}/cancel", experiments.cancel)
    app.router.add_post(f"/api/v1/experiments/{ID}/retry", experiments.retry)
    app.router.add_get(f"/api/v1/runs/{ID}", runs.show)
    app.router.add_get(f"/api/v1/runs/{ID}/logs", runs.logs)
    setup_dashboard_routes(app)


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
    app.router.add_post(f"/experiments/{ID}/start", actions.start)
    app.router.add_post(f"/experiments/{ID}/cancel", actions.cancel)
    app.router.add_post(f"/experiments/{ID}/retry", actions.retry)
    app.router.add_get(f"/runs/{ID}", pages.run)
    app.router.add_get(f"/runs/{ID}/live", pages.run_live)
    app.router.add_get("/login", pages.login_form)
    app.router.add_post("/login", pages.login)
    app.router.add_post("/logout", pages.logout)
    app.router.add_static("/static/", STATIC_DIR)
