"""The Python client: `Client()` with `models`, `experiments` and `runs`, each call one API
operation (sweeplab_client.operations), each answer a dataclass (sweeplab_client.models)."""

from __future__ import annotations

import builtins
from functools import cached_property
from pathlib import Path
from typing import Any

from sweeplab_client.config import resolve
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
from sweeplab_client.operations import OPERATIONS, PREDICT_LIMIT_PATH, path_of
from sweeplab_client.session import ApiError, Session
from sweeplab_client.sweepspec import experiment_body
from sweeplab_client.upload import upload

DEFAULT_PREDICT_LIMIT = 64
PAGE_SIZE = 1000  # runs a page: the most the API gives


class Client:
    """One server: the URL and token given, else SWEEPLAB_URL / SWEEPLAB_TOKEN, else the
    profile saved by `sweeplab login`."""

    def __init__(self, url: str | None = None, token: str | None = None,
                 profile: str | None = None, timeout: float = 120.0) -> None:
        target = resolve(url, token, profile)
        self.url = target.url
        self.session = Session(target.url, target.token, timeout)
        self.models = Models(self)
        self.experiments = Experiments(self)
        self.runs = Runs(self)

    def call(self, operation_id: str, ids: dict[str, object] | None = None,
             **kwargs: Any) -> Any:
        """The JSON answer of one operation of the table (None for an empty answer)."""
        method = OPERATIONS[operation_id].method
        return self.session.json(method, path_of(operation_id, **(ids or {})), **kwargs)

    @cached_property
    def document(self) -> dict[str, Any]:
        """The server's OpenAPI document, with this deployment's limits. Fetching it also
        proves the token: it is under /api."""
        return self.call("get_openapi")

    def predict_limit(self) -> int:
        node: Any = self.document
        for key in PREDICT_LIMIT_PATH:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, int) and node > 0 else DEFAULT_PREDICT_LIMIT

    def workers(self) -> list[Worker]:
        return [Worker.from_json(row) for row in self.call("list_workers")["workers"]]

    def dashboard_url(self, experiment_id: int) -> str:
        return f"{self.url}/experiments/{experiment_id}"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Models:
    def __init__(self, client: Client) -> None:
        self._client = client

    def _model(self, data: dict[str, Any]) -> Model:
        return Model.from_json(data, _client=self._client)

    def list(self) -> list[Model]:
        return [self._model(row) for row in self._client.call("list_models")["models"]]

    def create(self, name: str, description: str | None = None) -> Model:
        body = {"name": name, **({"description": description} if description else {})}
        return self._model(self._client.call("create_model", json=body))

    def get(self, model_id: int) -> Model:
        return self._model(self._client.call("get_model", {"id": model_id}))

    def find(self, ref: str | int) -> Model:
        """A model by its id, or by its name when `ref` is not a number."""
        if isinstance(ref, int) or str(ref).isdigit():
            return self.get(int(ref))
        found = [model for model in self.list() if model.name == ref]
        if not found:
            raise ApiError(404, "not_found", f"no model named {ref!r}")
        return found[0]

    def delete(self, model_id: int) -> None:
        self._client.call("delete_model", {"id": model_id})

    def upload(self, model_id: int, *paths: str, progress: bool = False) -> UploadResult:
        if not progress:
            return upload(self._client.session, model_id, list(paths))
        from sweeplab_client.progress import upload_with_bar

        return upload_with_bar(self._client.session, model_id, list(paths))

    def push_code(self, model_id: int, folder: str) -> CodeVersion:
        from sweeplab_client.code import push

        return CodeVersion.from_json(push(self._client.session, model_id, Path(folder)))

    def sweep(self, model_id: int, **options: Any) -> Experiment:
        """Create and start an experiment: grid, repeats, search, runs, seed, metric,
        minimize, timeout_s, or a whole `body` as the API takes it (sweep.yaml's fields)."""
        body = experiment_body(**options)
        data = self._client.call("create_experiment", {"id": model_id}, json=body)
        return Experiment.from_json(data, _client=self._client)

    def best(self, model_id: int) -> Best:
        return Best.from_json(self._client.call("get_best_run", {"id": model_id}))

    def predict(self, model_id: int, images: builtins.list[str]
                ) -> builtins.list[Prediction]:
        """One prediction per image, in the order given, in requests of the server's limit."""
        from sweeplab_client.code import predict_batches

        answers = predict_batches(self._client, model_id, images, self._client.predict_limit())
        return [Prediction.from_json(answer) for answer in answers]


class Experiments:
    def __init__(self, client: Client) -> None:
        self._client = client

    def _experiment(self, data: dict[str, Any]) -> Experiment:
        return Experiment.from_json(data, _client=self._client)

    def get(self, experiment_id: int) -> Experiment:
        return self._experiment(self._client.call("get_experiment", {"id": experiment_id}))

    def cancel(self, experiment_id: int) -> Experiment:
        return self._experiment(self._client.call("cancel_experiment", {"id": experiment_id}))

    def retry(self, experiment_id: int) -> Experiment:
        return self._experiment(self._client.call("retry_experiment", {"id": experiment_id}))


class Runs:
    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, run_id: int) -> Run:
        return Run.from_json(self._client.call("get_run", {"id": run_id}))

    def list(self, experiment_id: int, status: str | None = None) -> list[Run]:
        """Every run of the experiment (in `status` if given), page by page: an experiment's
        own JSON lists its runs only up to 100."""
        found: list[Run] = []
        query: dict[str, Any] = {"limit": PAGE_SIZE, **({"status": status} if status else {})}
        while True:
            page = self._client.call("list_experiment_runs", {"id": experiment_id},
                                     params=query)
            found += [Run.from_json(run) for run in page["runs"]]
            if page["next"] is None:
                return found
            query["after"] = page["next"]

    def logs(self, run_id: int) -> str:
        method = OPERATIONS["get_run_logs"].method
        return self._client.session.request(method, path_of("get_run_logs", id=run_id)).text
