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
# The client (client/): installed into .venv, editable (the tests run its `sweeplab` command),
# and built as a wheel into client/dist/, which the API serves at /client/ so that a laptop
# installs the client matching its server. Again when client/ changes.
client_stamp=.venv/.client.sha256
client_wanted=$(find client/pyproject.toml client/sweeplab_client -name '*.py' -o -name '*.toml' \
                | LC_ALL=C sort | xargs cat | sha256sum | cut -d' ' -f1)
if [[ ! -f $client_stamp || $(cat "$client_stamp") != "$client_wanted" || ! -x .venv/bin/sweeplab ]]
then
    echo "Installing the client into .venv and building its wheel into client/dist ..."
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e ./client
    rm -rf client/dist client/build
    .venv/bin/python -m pip wheel --quiet --disable-pip-version-check --no-deps -w client/dist \
        ./client
    echo "$client_wanted" > "$client_stamp"
fi
scripts/ensure_rabbitmq.sh
scripts/ensure_bubblewrap.sh
