#!/usr/bin/env bash
# The whole test suite: lint, unit and API tests, and the end-to-end tests against the real
# RabbitMQ with real API and worker processes, the fuzz, and the browser tests in headless
# Chromium. Installs what it needs first: the Python environment, RabbitMQ, Chromium and
# the shell linter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/ensure_chromium.sh
scripts/ensure_test_tools.sh
.venv/bin/ruff check .
.venv/bin/mypy  # the packages and settings are in pyproject.toml
.venv/bin/lint-imports  # the import rules, also in pyproject.toml
# In parallel (pytest-xdist), three workers on two cores: much of a test is waiting on the
# processes it started (API, workers, brokers, booted machines). Each file runs whole on one
# worker (loadfile: the boot test's steps share one machine) and tests/conftest.py puts the
# longest files first (--no-loadscope-reorder keeps that order). `-n 0` runs them one by one.
exec .venv/bin/python -m pytest -n 3 --dist loadfile --no-loadscope-reorder "$@"
