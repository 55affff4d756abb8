#!/usr/bin/env bash
# Create .venv with the pinned requirements (again when requirements.txt or requirements-dev.txt
# changes), make sure RabbitMQ is up and bubblewrap (the scripts' sandbox) is installed where
# it may be. Both README commands start with this.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
    echo "python3 (3.11 or newer) is needed: sudo apt-get install python3 python3-venv" >&2
    exit 1
fi
if [[ ! -x .venv/bin/python ]]; then
    echo "Creating .venv ..."
    "$python" -m venv .venv || {
        echo "python3 -m venv failed; install it with: sudo apt-get install python3-venv" >&2
        exit 1
    }
fi
# requirements-dev.txt: the service's requirements.txt plus the test and benchmark tools.
stamp=.venv/.requirements.sha256
wanted=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$wanted" ]]; then
    echo "Installing requirements-dev.txt (with requirements.txt) into .venv ..."
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
    echo "$wanted" > "$stamp"
fi
scripts/ensure_rabbitmq.sh
scripts/ensure_bubblewrap.sh
