"""Every operation of the API the client calls, and the fields it reads of each answer.
tests/test_client.py checks this table against service/web/openapi.yaml: a route renamed or
a field dropped there fails the suite, not a user's laptop."""

from __future__ import annotations

from dataclasses import dataclass

from sweeplab_client.models import (
    Best,
    CodeVersion,
    Experiment,
    Model,
    Prediction,
    Run,
    UploadResult,
    Worker,
)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # a template: {id}, {version}
    answer: str | None  # the component schema of its JSON answer (None: not JSON)


OPERATIONS: dict[str, Operation] = {op_id: Operation(*row) for op_id, row in {
    "get_openapi": ("GET", "/api/v1/openapi.json", None),
    "list_models": ("GET", "/api/v1/models", "ModelList"),
    "create_model": ("POST", "/api/v1/models", "Model"),
    "get_model": ("GET", "/api/v1/models/{id}", "Model"),
    "delete_model": ("DELETE", "/api/v1/models/{id}", None),
    "upload_images": ("POST", "/api/v1/models/{id}/images", "UploadResult"),
    "upload_code": ("POST", "/api/v1/models/{id}/code", "CodeVersion"),
    "get_best_run": ("GET", "/api/v1/models/{id}/best", "Best"),
    "predict": ("POST", "/api/v1/models/{id}/predict", "PredictionList"),
    "create_experiment": ("POST", "/api/v1/models/{id}/experiments", "Experiment"),
    "get_experiment": ("GET", "/api/v1/experiments/{id}", "Experiment"),
    "cancel_experiment": ("POST", "/api/v1/experiments/{id}/cancel", "Experiment"),
    "retry_experiment": ("POST", "/api/v1/experiments/{id}/retry", "Experiment"),
    "list_experiment_runs": ("GET", "/api/v1/experiments/{id}/runs", "RunPage"),
    "get_run": ("GET", "/api/v1/runs/{id}", "Run"),
    "get_run_logs": ("GET", "/api/v1/runs/{id}/logs", None),
    "list_workers": ("GET", "/api/v1/workers", "WorkerList"),
}.items()}

# The fields read of each schema (the dataclasses' own, and the lists' wrappers).
FIELDS_READ: dict[str, list[str]] = {
    "ModelList": ["models"],
    "Model": Model.api_fields(),
    "Best": Best.api_fields(),
    "UploadResult": UploadResult.api_fields(),
    "CodeVersion": CodeVersion.api_fields(),
    "PredictionList": ["predictions"],
    "Prediction": Prediction.api_fields(),
    "Experiment": Experiment.api_fields(),
    "Run": Run.api_fields(),
    "RunPage": ["runs", "next"],
    "WorkerList": ["workers"],
    "Worker": Worker.api_fields(),
    "Error": ["error", "rejected"],
}

# From the served document: the most images one predict request may carry (this
# deployment's SWEEPLAB_MAX_PREDICT_IMAGES).
PREDICT_LIMIT_PATH = ("components", "schemas", "PredictUpload", "properties", "image",
                      "maxItems")


def path_of(operation_id: str, **ids: object) -> str:
    return OPERATIONS[operation_id].path.format(**ids)
