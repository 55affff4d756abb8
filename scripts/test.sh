#!/usr/bin/env bash
# The whole test suite: lint, unit and API tests, and the end-to-end tests against the real
# RabbitMQ with real API and worker processes. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
