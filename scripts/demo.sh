#!/usr/bin/env bash
# Install what is missing, start the API and a worker in the background, and run the demo:
# the default 27-run sweep of our train.py on the bundled sample digits, the best parameters,
# and predictions on held-out images (scripts/api_test.sh). The service keeps running.
#
#   scripts/demo.sh          start (or reuse) the service and run the demo sweep
#   scripts/demo.sh stop     stop the API and the worker it started
#
# PORT (default 8080) and THREADS (worker threads, default: the number of cores) may be set;
# every SWEEPLAB_* setting is honoured (data under ./data by default), e.g. SWEEPLAB_BROKER_URL
# naming another RabbitMQ virtual host. The pid files and logs live in SWEEPLAB_DATA_DIR/demo:
# a second demo beside the first needs a data directory of its own, and `stop` the same one.
set -euo pipefail
cd "$(dirname "$0")/.."

export SWEEPLAB_DATA_DIR=${SWEEPLAB_DATA_DIR:-$PWD/data}
port=${PORT:-8080}
threads=${THREADS:-$(nproc)}
run_dir=$SWEEPLAB_DATA_DIR/demo
mkdir -p "$run_dir"

alive() { [[ -f $run_dir/$1.pid ]] && kill -0 "$(cat "$run_dir/$1.pid")" 2>/dev/null; }

stop() {
    for part in worker api; do
        if alive "$part"; then
            kill -TERM -- "-$(cat "$run_dir/$part.pid")" 2>/dev/null || true
            echo "stopped the $part"
        fi
        rm -f "$run_dir/$part.pid"
    done
}

start() {  # start NAME COMMAND...: in its own session, so `stop` ends it with its children
    local name=$1; shift
    if alive "$name"; then echo "the $name is already running"; return; fi
    setsid "$@" >>"$run_dir/$name.log" 2>&1 < /dev/null &
    echo $! >"$run_dir/$name.pid"
    echo "started the $name (log: $run_dir/$name.log)"
}

if [[ ${1:-} == stop ]]; then stop; exit 0; fi

scripts/setup.sh
[[ -f sample_data/train.zip ]] || .venv/bin/python scripts/make_sample_data.py sample_data
.venv/bin/python -m service.migrate
start api .venv/bin/python -m service --port "$port"
start worker .venv/bin/dramatiq actors --processes 1 --threads "$threads"
for _ in $(seq 1 60); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    alive api || { tail -n 20 "$run_dir/api.log" >&2; echo "the API did not start" >&2; exit 1; }
    sleep 0.5
done
SAMPLE_DIR=sample_data scripts/api_test.sh "http://127.0.0.1:$port"
stop_command="scripts/demo.sh stop"
[[ $SWEEPLAB_DATA_DIR == "$PWD/data" ]] ||
    stop_command="SWEEPLAB_DATA_DIR=$(printf %q "$SWEEPLAB_DATA_DIR") $stop_command"
cat <<MSG

sweeplab is running: open the dashboard at http://127.0.0.1:$port/ — the API is under
http://127.0.0.1:$port/api/v1 (health: /healthz) — with a worker of $threads thread(s).
Data and logs are under $SWEEPLAB_DATA_DIR. Stop both with: $stop_command
MSG
