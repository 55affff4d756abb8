"""The sweeplab client: `Client()` in Python, `sweeplab` on the command line."""

from __future__ import annotations

__version__ = "0.1.0"  # kept equal to client/pyproject.toml's (tests/test_client.py checks)

from sweeplab_client.client import Client  # noqa: E402
from sweeplab_client.config import ConfigError  # noqa: E402
from sweeplab_client.models import (  # noqa: E402
    Best,
    CodeVersion,
    Experiment,
    Model,
    Prediction,
    Run,
    UploadResult,
    Worker,
)
from sweeplab_client.session import ApiError, ConnectionFailed  # noqa: E402

__all__ = ["ApiError", "Best", "Client", "CodeVersion", "ConfigError", "ConnectionFailed",
           "Experiment", "Model", "Prediction", "Run", "UploadResult", "Worker", "__version__"]
