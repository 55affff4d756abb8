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
exec .venv/bin/python -m pytest "$@"
