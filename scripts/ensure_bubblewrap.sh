#!/usr/bin/env bash
# Install bubblewrap (bwrap), the sandbox every script runs in (README, "What a script can
# reach"), with apt-get where we may (root or password-less sudo on Debian/Ubuntu). Where we may
# not, say how and go on: with SWEEPLAB_SANDBOX=auto (the default) scripts then run without it.
set -euo pipefail

command -v bwrap >/dev/null && exit 0

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else
        return 1
    fi
}

if command -v apt-get >/dev/null && as_root true; then
    echo "Installing bubblewrap with apt-get ..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap ||
        { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
          as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap; }
else
    echo "bubblewrap is not installed: scripts will run without a sandbox. Install it with:" >&2
    echo "    sudo apt-get install bubblewrap     (Debian/Ubuntu)" >&2
fi
