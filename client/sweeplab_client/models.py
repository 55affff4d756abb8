"""What the API answers, as dataclasses. Each field is named as the API's JSON names it, so
tests/test_client.py can check every field read here against service/web/openapi.yaml; the
answer itself stays in `raw` (what `--json` prints)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T", bound="Answer")
TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Answer:
    """A row of the API: built from its JSON by the field names."""

    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def api_fields(cls) -> list[str]:
        """The JSON keys this class reads (every field but the client's own)."""
        return [f.name for f in dataclasses.fields(cls)
                if f.name != "raw" and not f.name.startswith("_")]

    @classmethod
    def from_json(cls: type[T], data: dict[str, Any], **extra: Any) -> T:
        values = {name: data.get(name) for name in cls.api_fields()}
        values.update(cls._nested(data))
        return cls(raw=data, **values, **extra)

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {}


@dataclass
class Best(Answer):
    run_id: int = 0
    experiment_id: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    accuracy: float | None = None
    value: float | None = None
    metric: str | None = None
    direction: str | None = None


def _best(data: dict[str, Any]) -> dict[str, Any]:
    best = data.get("best")
    return {"best": Best.from_json(best) if best else None}


@dataclass
class Run(Answer):
    id: int = 0
    experiment_id: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    status: str = ""
    accuracy: float | None = None
    value: float | None = None
    attempts: int = 0
    duration_s: float | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    error: str | None = None
    reused_from: int | None = None


@dataclass
class Worker(Answer):
    name: str = ""
    host: str = ""
    pid: int = 0
    threads: int = 0
    gpus: list[str] = field(default_factory=list)
    remote: bool = False
    status: str = ""
    last_seen_at: str = ""
    runs: list[int] = field(default_factory=list)


@dataclass
class CodeVersion(Answer):
    version: str = ""
    files: list[dict[str, Any]] = field(default_factory=list)
    train: str = ""
    test: str | None = None
    requirements: str | None = None
    created_at: str = ""


@dataclass
class Prediction(Answer):
    run_id: int = 0
    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0

    def __repr__(self) -> str:
        return (f"Prediction(name={self.name!r}, label={self.label!r}, "
                f"confidence={self.confidence!r}, run_id={self.run_id})")

    @property
    def label(self) -> str | None:
        label = self.output.get("label")
        return None if label is None else str(label)

    @property
    def confidence(self) -> float | None:
        value = self.output.get("confidence", self.output.get("accuracy"))
        return value if isinstance(value, int | float) else None


@dataclass
class UploadResult(Answer):
    """The sum over every request of one upload."""

    added: int = 0
    duplicates: int = 0
    label_conflicts: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    image_count: int = 0
    labels: dict[str, int] = field(default_factory=dict)

    def add(self, answer: dict[str, Any]) -> None:
        self.added += answer.get("added") or 0
        self.duplicates += answer.get("duplicates") or 0
        self.label_conflicts += answer.get("label_conflicts") or []
        self.rejected += answer.get("rejected") or []
        if "image_count" in answer:  # the model's totals after the latest request
            self.image_count, self.labels = answer["image_count"], answer["labels"]


@dataclass
class Experiment(Answer):
    id: int = 0
    model_id: int = 0
    status: str = ""
    grid: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    objective: dict[str, Any] | None = None
    repeats: int | None = None
    search: dict[str, Any] | None = None
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    code_version: str | None = None
    waiting_for_broker: bool | None = None
    best: Best | None = None
    runs: list[Run] = field(default_factory=list)
    _client: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {**_best(data), "runs": [Run.from_json(run) for run in data.get("runs") or []]}

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    def refresh(self) -> Experiment:
        return self._client.experiments.get(self.id)

    def wait(self, progress: bool = False, interval: float = 1.0) -> Experiment:
        """Until the experiment ends, with the live view when `progress`; the ended one."""
        from sweeplab_client.watch import watch

        done = watch(self._client, self.id, live=progress, plain=False, interval=interval)
        vars(self).update(vars(done))  # this object is the ended experiment now, too
        return self

    def cancel(self) -> Experiment:
        return self._client.experiments.cancel(self.id)

    def retry(self) -> Experiment:
        return self._client.experiments.retry(self.id)


@dataclass
class Model(Answer):
    id: int = 0
    name: str = ""
    description: str | None = None
    created_at: str = ""
    image_count: int = 0
    unlabelled_count: int | None = None
    labels: dict[str, int] = field(default_factory=dict)
    experiment_count: int | None = None
    code_version: str | None = None
    best: Best | None = None
    _client: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        return _best(data)

    def refresh(self) -> Model:
        return self._client.models.get(self.id)

    def upload(self, *paths: str, progress: bool = False) -> UploadResult:
        return self._client.models.upload(self.id, *paths, progress=progress)

    def push_code(self, folder: str) -> CodeVersion:
        return self._client.models.push_code(self.id, folder)

    def sweep(self, **options: Any) -> Experiment:
        return self._client.models.sweep(self.id, **options)

    def best_run(self) -> Best:
        return self._client.models.best(self.id)

    def predict(self, images: list[str]) -> list[Prediction]:
        return self._client.models.predict(self.id, images)
