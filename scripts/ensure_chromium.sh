#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (never a downloaded browser): install it with
# apt-get where we may (root or password-less sudo), or say what to run and stop.
set -euo pipefail
if command -v chromium >/dev/null || [[ -x /usr/bin/chromium ]]; then
    exit 0
fi
as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else
        return 1
    fi
}
if command -v apt-get >/dev/null && as_root true; then
    echo "Installing Chromium for the browser tests with apt-get ..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
else
    echo "The browser tests need Chromium: sudo apt-get install chromium" >&2
    exit 1
fi
