"""Every route of the API, one line each: the first file to open to find any behaviour."""

from __future__ import annotations

from aiohttp import web

from service.handlers import experiments, health, models, runs

ID = r"{id:\d{1,18}}"


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
