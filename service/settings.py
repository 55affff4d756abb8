"""Every setting sweeplab reads, taken once from `SWEEPLAB_*` environment variables.

The README's settings table lists exactly these; a test checks that the two agree.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# which requests the API's access log names (service.web.accesslog); the first is the default
ACCESS_LOG_CHOICES = ("changes", "all", "off")
ON_OFF = ("on", "off")
SANDBOX_CHOICES = ("auto", "on", "off")  # the first is the default

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting has a value sweeplab cannot use."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str
    train_script: Path
    test_script: Path
    python: str
    run_timeout_s: float
    max_run_timeout_s: float
    predict_timeout_s: float
    max_grid_points: int
    max_request_bytes: int
    max_file_bytes: int
    max_image_pixels: int
    max_images_per_request: int
    max_archive_members: int
    max_archive_bytes: int
    lease_s: float
    train_retries: int
    max_run_folder_bytes: int
    gpus: tuple[str, ...]
    api_url: str | None
    # repr=False: settings may end up in a log, the token never
    api_token: str | None = field(default=None, repr=False)
    worker_token: str | None = field(default=None, repr=False)
    max_predict_images: int = 64
    predict_idle_s: float = 300.0
    access_log: str = ACCESS_LOG_CHOICES[0]
    worker_retention_s: float = 86400.0
    code_uploads: bool = True
    code_max_bytes: int = 50 << 20
    code_max_files: int = 2000
    env_build_timeout_s: float = 900.0
    sandbox: str = SANDBOX_CHOICES[0]
    script_network: bool = True
    script_memory_mb: int = 4096  # 0: no limit
    script_tasks: int = 256  # 0: no limit

    @property
    def remote(self) -> bool:
        """A worker that reaches the service through the API, not the database."""
        return self.api_url is not None

    @property
    def database_location(self) -> str:
        """The database URL without its password, fit for a log line."""
        return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", self.database_url)

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def code_dir(self) -> Path:
        """Uploaded code versions, one folder per version: `<code dir>/<version>/`."""
        return self.data_dir / "code"

    @property
    def envs_dir(self) -> Path:
        """Virtual environments built for code versions' requirements (one per file content
        and interpreter)."""
        return self.data_dir / "envs"


# name -> (default, description); the description is what the README documents.
DEFAULTS: dict[str, tuple[str, str]] = {
    "SWEEPLAB_DATA_DIR": ("./data", "every file the service writes lives under it"),
    "SWEEPLAB_DATABASE_URL": ("", "Peewee database URL; default SQLite `<data dir>/sweeplab.db`"),
    "SWEEPLAB_BROKER_URL": ("amqp://guest:guest@127.0.0.1:5672/%2F", "AMQP URL with vhost"),
    "SWEEPLAB_TRAIN_SCRIPT": ("train.py", "training script, relative to the project"),
    "SWEEPLAB_TEST_SCRIPT": ("test.py", "prediction script, relative to the project"),
    "SWEEPLAB_PYTHON": ("", "interpreter for the scripts; default the one running sweeplab"),
    "SWEEPLAB_RUN_TIMEOUT_S": ("1500", "default time limit of one training run"),
    "SWEEPLAB_MAX_RUN_TIMEOUT_S": ("1500", "largest `timeout_s` an experiment may ask for"),
    "SWEEPLAB_PREDICT_TIMEOUT_S": ("120", "time limit of one prediction"),
    "SWEEPLAB_MAX_PREDICT_IMAGES": ("64", "images per predict request"),
    "SWEEPLAB_PREDICT_IDLE_S": ("300", "a warm prediction process unused this long is stopped"),
    "SWEEPLAB_MAX_GRID_POINTS": ("20000", "runs per experiment: configurations × repeats (a "
                                         "grid's points, a search's `runs`)"),
    "SWEEPLAB_MAX_REQUEST_BYTES": ("1073741824", "bytes per upload request"),
    "SWEEPLAB_MAX_FILE_BYTES": ("536870912", "bytes per uploaded file or archive"),
    "SWEEPLAB_MAX_IMAGE_PIXELS": ("25000000", "pixels per image"),
    "SWEEPLAB_MAX_IMAGES_PER_REQUEST": ("20000", "images per upload request"),
    "SWEEPLAB_MAX_ARCHIVE_MEMBERS": ("100000", "members per archive"),
    "SWEEPLAB_MAX_ARCHIVE_BYTES": ("2147483648", "unpacked bytes per archive"),
    "SWEEPLAB_LEASE_S": ("30", "a running run whose worker is silent this long is taken over"),
    "SWEEPLAB_TRAIN_RETRIES": ("5", "retries of a train message that fails for an "
                               "infrastructure reason (database down) before it is "
                               "dead-lettered; the reconciler re-sends it up to 3 times"),
    "SWEEPLAB_API_TOKEN": ("", "when set, every /api route needs `Authorization: Bearer` it"),
    "SWEEPLAB_WORKER_TOKEN": ("", "API: opens the worker routes to remote workers; worker: "
                              "sent to them"),
    "SWEEPLAB_API_URL": ("", "worker: the API's base URL; set, the worker is remote"),
    "SWEEPLAB_MAX_RUN_FOLDER_BYTES": ("1073741824", "largest run folder a remote worker may "
                                      "send back"),
    "SWEEPLAB_GPUS": ("", "worker: GPU ids, one per worker thread (CUDA_VISIBLE_DEVICES)"),
    "SWEEPLAB_WORKER_RETENTION_S": ("86400", "a worker stopped or lost this long is no longer "
                                    "listed, and forgotten"),
    "SWEEPLAB_CODE_UPLOADS": ("on", "API: `off` refuses uploads of models' code (403): the "
                              "deployment runs only its installed scripts"),
    "SWEEPLAB_CODE_MAX_BYTES": ("52428800", "bytes of one code upload: its parts, and what "
                                "an archive unpacks to"),
    "SWEEPLAB_CODE_MAX_FILES": ("2000", "files in one code upload"),
    "SWEEPLAB_ENV_BUILD_TIMEOUT_S": ("900", "time limit of building one code version's "
                                     "environment (pip install -r its requirements)"),
    "SWEEPLAB_ACCESS_LOG": (ACCESS_LOG_CHOICES[0], "API: which requests the access log names: "
                            "changes (all but successful reads), all, off"),
    "SWEEPLAB_SANDBOX": (SANDBOX_CHOICES[0], "scripts run in bubblewrap: auto (when installed), "
                         "on (the API and workers refuse to start without it), off"),
    "SWEEPLAB_SCRIPT_NETWORK": ("on", "on or off: whether scripts may use the network (off "
                                "needs the sandbox)"),
    "SWEEPLAB_SCRIPT_MEMORY_MB": ("4096", "address space of one script (RLIMIT_AS); 0: no "
                                  "limit"),
    "SWEEPLAB_SCRIPT_TASKS": ("256", "processes and threads of one script at once; 0: no "
                              "limit"),
}


def _number(env: Mapping[str, str], name: str, kind: type[float] | type[int]) -> float | int:
    raw = env.get(name) or DEFAULTS[name][0]
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


def _count(env: Mapping[str, str], name: str) -> int:
    """A whole number, 0 allowed (meaning: no limit)."""
    raw = env.get(name) or DEFAULTS[name][0]
    if not raw.isdigit():
        raise SettingsError(f"{name} must be a whole number (0: no limit), got {raw!r}")
    return int(raw)


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name) or DEFAULTS[name][0]
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _path(env: Mapping[str, str], name: str, base: Path) -> Path:
    raw = env.get(name) or DEFAULTS[name][0]
    path = Path(raw).expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def _gpus(raw: str) -> tuple[str, ...]:
    gpus = tuple(part.strip() for part in raw.split(",") if part.strip())
    if any(not gpu.isascii() or not gpu.isalnum() for gpu in gpus):
        raise SettingsError(f"SWEEPLAB_GPUS must be GPU ids separated by commas, got {raw!r}")
    if len(set(gpus)) != len(gpus):
        raise SettingsError(f"SWEEPLAB_GPUS names a GPU twice: {raw!r}")
    return gpus


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    data_dir = _path(env, "SWEEPLAB_DATA_DIR", Path.cwd())
    settings = Settings(
        data_dir=data_dir,
        database_url=env.get("SWEEPLAB_DATABASE_URL") or f"sqlite:///{data_dir / 'sweeplab.db'}",
        broker_url=env.get("SWEEPLAB_BROKER_URL") or DEFAULTS["SWEEPLAB_BROKER_URL"][0],
        train_script=_path(env, "SWEEPLAB_TRAIN_SCRIPT", PROJECT_ROOT),
        test_script=_path(env, "SWEEPLAB_TEST_SCRIPT", PROJECT_ROOT),
        python=env.get("SWEEPLAB_PYTHON") or sys.executable,
        run_timeout_s=_number(env, "SWEEPLAB_RUN_TIMEOUT_S", float),
        max_run_timeout_s=_number(env, "SWEEPLAB_MAX_RUN_TIMEOUT_S", float),
        predict_timeout_s=_number(env, "SWEEPLAB_PREDICT_TIMEOUT_S", float),
        max_predict_images=int(_number(env, "SWEEPLAB_MAX_PREDICT_IMAGES", int)),
        predict_idle_s=_number(env, "SWEEPLAB_PREDICT_IDLE_S", float),
        max_grid_points=int(_number(env, "SWEEPLAB_MAX_GRID_POINTS", int)),
        max_request_bytes=int(_number(env, "SWEEPLAB_MAX_REQUEST_BYTES", int)),
        max_file_bytes=int(_number(env, "SWEEPLAB_MAX_FILE_BYTES", int)),
        max_image_pixels=int(_number(env, "SWEEPLAB_MAX_IMAGE_PIXELS", int)),
        max_images_per_request=int(_number(env, "SWEEPLAB_MAX_IMAGES_PER_REQUEST", int)),
        max_archive_members=int(_number(env, "SWEEPLAB_MAX_ARCHIVE_MEMBERS", int)),
        max_archive_bytes=int(_number(env, "SWEEPLAB_MAX_ARCHIVE_BYTES", int)),
        lease_s=_number(env, "SWEEPLAB_LEASE_S", float),
        train_retries=int(_number(env, "SWEEPLAB_TRAIN_RETRIES", int)),
        api_token=env.get("SWEEPLAB_API_TOKEN") or None,
        worker_token=env.get("SWEEPLAB_WORKER_TOKEN") or None,
        max_run_folder_bytes=int(_number(env, "SWEEPLAB_MAX_RUN_FOLDER_BYTES", int)),
        gpus=_gpus(env.get("SWEEPLAB_GPUS", "")),
        api_url=(env.get("SWEEPLAB_API_URL") or "").rstrip("/") or None,
        access_log=_choice(env, "SWEEPLAB_ACCESS_LOG", ACCESS_LOG_CHOICES),
        worker_retention_s=_number(env, "SWEEPLAB_WORKER_RETENTION_S", float),
        code_uploads=_choice(env, "SWEEPLAB_CODE_UPLOADS", ON_OFF) == "on",
        code_max_bytes=int(_number(env, "SWEEPLAB_CODE_MAX_BYTES", int)),
        code_max_files=int(_number(env, "SWEEPLAB_CODE_MAX_FILES", int)),
        env_build_timeout_s=_number(env, "SWEEPLAB_ENV_BUILD_TIMEOUT_S", float),
        sandbox=_choice(env, "SWEEPLAB_SANDBOX", SANDBOX_CHOICES),
        script_network=_choice(env, "SWEEPLAB_SCRIPT_NETWORK", ("on", "off")) == "on",
        script_memory_mb=_count(env, "SWEEPLAB_SCRIPT_MEMORY_MB"),
        script_tasks=_count(env, "SWEEPLAB_SCRIPT_TASKS"),
    )
    if settings.api_url and not settings.worker_token:
        raise SettingsError("SWEEPLAB_API_URL is set (a remote worker) but "
                            "SWEEPLAB_WORKER_TOKEN is not: the API's worker routes need it")
    if settings.worker_retention_s < settings.lease_s:  # a live worker is never forgotten
        raise SettingsError("SWEEPLAB_WORKER_RETENTION_S must be at least SWEEPLAB_LEASE_S")
    if settings.run_timeout_s > settings.max_run_timeout_s:
        raise SettingsError("SWEEPLAB_RUN_TIMEOUT_S must not exceed SWEEPLAB_MAX_RUN_TIMEOUT_S")
    return settings


def ensure_data_dirs(settings: Settings) -> None:
    for folder in (settings.images_dir, settings.snapshots_dir, settings.runs_dir,
                   settings.tmp_dir, settings.code_dir, settings.envs_dir):
        folder.mkdir(parents=True, exist_ok=True)
