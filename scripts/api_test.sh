#!/usr/bin/env bash
# Walk the whole sweeplab API against a running server, with curl:
# create a model, upload the sample images, run the default 27-run sweep and show its progress,
# print the results sorted by accuracy and the best, predict held-out images, and try the rest
# of the routes (start/cancel, logs, errors, delete). Exits non-zero as soon as a step fails.
#
#   scripts/api_test.sh [BASE_URL]          default http://127.0.0.1:8080
#
# SAMPLE_DIR      sample data (default ./sample_data; made by scripts/make_sample_data.py)
# SWEEP_TIMEOUT_S how long to wait for the sweep (default 3600)
# PREDICT_BATCH   images per predict request (default 32; the API takes up to
#                 SWEEPLAB_MAX_PREDICT_IMAGES)
# PYTHON          used only to read JSON (default: .venv/bin/python, else python3)
# SWEEPLAB_API_TOKEN  sent as a bearer token when set
set -euo pipefail
cd "$(dirname "$0")/.."

base=${1:-http://127.0.0.1:8080}
api=$base/api/v1
sample=${SAMPLE_DIR:-sample_data}
timeout_s=${SWEEP_TIMEOUT_S:-3600}
python=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
auth=()
[[ -n ${SWEEPLAB_API_TOKEN:-} ]] && auth=(-H "Authorization: Bearer $SWEEPLAB_API_TOKEN")

step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

# call EXPECTED_STATUS METHOD URL [curl args...]: print the body; fail on another status.
call() {
    local expected=$1 method=$2 url=$3 body status
    shift 3
    body=$(mktemp)
    status=$(curl -sS -o "$body" -w '%{http_code}' -X "$method" "${auth[@]}" "$@" "$url") ||
        fail "$method $url: curl could not reach the server"
    if [[ $status != "$expected" ]]; then
        cat "$body" >&2; rm -f "$body"
        fail "$method $url answered $status, expected $expected"
    fi
    cat "$body"; rm -f "$body"
}

# json EXPRESSION: evaluate a Python expression over the JSON on stdin, bound to `d`.
json() { "$python" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

[[ -f $sample/train.zip ]] || "$python" scripts/make_sample_data.py "$sample"

step "health"
call 200 GET "$base/healthz"; echo

step "create a model"
model=$(call 201 POST "$api/models" -H 'Content-Type: application/json' \
    -d "{\"name\": \"digits-$(date +%s)-$$\", \"description\": \"sample digits\"}")
model_id=$(json 'd["id"]' <<<"$model")
echo "model $model_id"
call 200 GET "$api/models" | json 'len(d["models"]), "model(s)"'

step "upload the sample images (one zip, one folder per label)"
call 201 POST "$api/models/$model_id/images" -F "images=@$sample/train.zip" |
    json '"added %s, duplicates %s, rejected %s, labels %s" % (d["added"], d["duplicates"], len(d["rejected"]), d["labels"])'
call 200 GET "$api/models/$model_id" | json '"model has %s images" % d["image_count"]'

step "start the default sweep (27 runs)"
experiment_id=$(call 201 POST "$api/models/$model_id/experiments" \
    -H 'Content-Type: application/json' -d '{}' | json 'd["id"]')
echo "experiment $experiment_id"

step "progress"
deadline=$(( $(date +%s) + timeout_s ))
while :; do
    experiment=$(call 200 GET "$api/experiments/$experiment_id")
    status=$(json 'd["status"]' <<<"$experiment")
    json '" ".join(f"{k}={v}" for k, v in d["counts"].items()) + "  [" + d["status"] + "]"' <<<"$experiment"
    case $status in completed|failed|cancelled) break ;; esac
    (( $(date +%s) < deadline )) || fail "sweep still $status after $timeout_s s"
    sleep 2
done
[[ $status == completed ]] || fail "the sweep ended $status"

step "results, best first"
json '"\n".join("run %5s  i=%-6s j=%s k=%-5s %-9s accuracy=%s  %s s  attempts=%s" % (r["id"], r["params"]["i"], r["params"]["j"], r["params"]["k"], r["status"], r["accuracy"], r["duration_s"], r["attempts"]) for r in sorted(d["runs"], key=lambda r: (-(r["accuracy"] or -1), r["id"])))' <<<"$experiment"
call 200 GET "$api/experiments/$experiment_id" | json '"runs:", len(d["runs"])'

step "best"
best=$(call 200 GET "$api/models/$model_id/best")
echo "$best"
best_run=$(json 'd["run_id"]' <<<"$best")
call 200 GET "$api/runs/$best_run" | json '"run %s: %s, accuracy %s" % (d["id"], d["status"], d["accuracy"])'
echo "its log ends with:"
call 200 GET "$api/runs/$best_run/logs" | tail -n 2

step "predict held-out images, in batches (several image parts per request)"
images=("$sample"/heldout/*.png)
batch=${PREDICT_BATCH:-32}
right=0 total=0
for (( first = 0; first < ${#images[@]}; first += batch )); do
    chunk=("${images[@]:first:batch}")
    parts=()
    for image in "${chunk[@]}"; do parts+=(-F "image=@$image"); done
    answer=$(call 200 POST "$api/models/$model_id/predict" "${parts[@]}")
    # the answers come in the order the images were sent; one label per line
    mapfile -t labels < <(json '"\n".join(str(p["output"].get("label")) for p in d["predictions"])' <<<"$answer")
    (( ${#labels[@]} == ${#chunk[@]} )) || fail "sent ${#chunk[@]} images, got ${#labels[@]} answers"
    for n in "${!chunk[@]}"; do
        expected=$(basename "${chunk[n]}"); expected=${expected%%_*}
        total=$((total + 1)); [[ ${labels[n]} == "$expected" ]] && right=$((right + 1))
        echo "$(basename "${chunk[n]}"): predicted ${labels[n]} (expected $expected)"
    done
done
echo "$right of $total predictions right"
echo "one image alone gets the single answer:"
call 200 POST "$api/models/$model_id/predict" -F "image=@${images[0]}" |
    json '"label %s in %s s (run %s)" % (d["output"].get("label"), d["duration_s"], d["run_id"])'

step "the other routes"
call 200 GET "$api/models/$model_id/experiments" | json '"%s experiment(s)" % len(d["experiments"])'
small=$(call 201 POST "$api/models/$model_id/experiments" -H 'Content-Type: application/json' \
    -d '{"grid": {"i": [0.01], "j": [1], "k": [10]}, "start": false}' | json 'd["id"]')
call 202 POST "$api/experiments/$small/start" | json '"started:", d["status"]'
call 202 POST "$api/experiments/$small/cancel" | json '"cancelled:", d["status"]'
call 404 GET "$api/experiments/999999999" | json 'd["error"]["message"]'
call 422 POST "$api/models/$model_id/experiments" -H 'Content-Type: application/json' \
    -d '{"grid": {"i": [-1]}}' | json 'd["error"]["message"]'
call 200 GET "$api/openapi.json" | json '"openapi", d["openapi"], len(d["paths"]), "paths"'
scratch=$(call 201 POST "$api/models" -H 'Content-Type: application/json' \
    -d "{\"name\": \"scratch-$(date +%s)-$$\"}" | json 'd["id"]')
call 204 DELETE "$api/models/$scratch"
echo "scratch model $scratch deleted"

printf '\nAll API steps passed. Best: %s\n' "$best"
