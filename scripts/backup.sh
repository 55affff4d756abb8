#!/usr/bin/env bash
# Back up or restore sweeplab (service/ops/backup.py says what the archive holds):
#   sudo scripts/backup.sh create DEST.tar.gz    # while the service runs
#   sudo scripts/backup.sh restore SRC.tar.gz    # onto an empty data directory, units stopped
# Settings come from the environment; /etc/sweeplab/sweeplab.env (the units' file) fills in what
# the environment does not set, read as systemd reads it (KEY=value lines, never run as code).
# Run as root, the backup itself runs as the data directory's owner (the service's user), so
# restored files belong to the service and the database is never opened as root.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ ! -x $root/.venv/bin/python && -x /opt/sweeplab/.venv/bin/python ]]; then
    root=/opt/sweeplab
fi

env_file=/etc/sweeplab/sweeplab.env
if [[ -r $env_file ]]; then
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]] || continue
        key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
        value=${value%"${value##*[![:space:]]}"}  # trailing blanks
        if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then
            value=${BASH_REMATCH[1]}
        fi
        [[ -v $key ]] || export "$key=$value"
    done < "$env_file"
elif [[ -e $env_file && -z ${SWEEPLAB_DATA_DIR:-} ]]; then
    echo "backup: cannot read $env_file and SWEEPLAB_DATA_DIR is not set: run it with sudo" >&2
    exit 1
fi

# The service runs from the project folder (relative settings resolve there); the archive's
# path is the caller's, so a relative one is made absolute first.
args=()
for arg in "$@"; do
    if [[ ${#args[@]} -gt 0 && $arg != -* && $arg != /* ]]; then
        arg=$PWD/$arg
    fi
    args+=("$arg")
done
cd "$root"
python=("$root/.venv/bin/python" -m service.backup)
if [[ $EUID -eq 0 && ${1:-} != -* ]]; then
    owner=$(stat -c %U -- "${SWEEPLAB_DATA_DIR:-data}" 2>/dev/null || true)
    if [[ -z $owner ]]; then
        echo "backup: no data directory ${SWEEPLAB_DATA_DIR:-data}: create it, owned by the" \
             "service's user (install -d -o sweeplab -g sweeplab DIR)" >&2
        exit 1
    fi
    if [[ $owner != root ]]; then
        exec runuser -u "$owner" -- "${python[@]}" "${args[@]}"
    fi
fi
exec "${python[@]}" "${args[@]}"
