#!/usr/bin/env bash
# tests/test_provision.py lints the shell scripts with Debian's shellcheck (one package, no
# dependencies): install it with apt-get where we may (root or password-less sudo), or say what
# to run and stop.
set -euo pipefail
if command -v shellcheck >/dev/null; then
    exit 0
fi
as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else
        return 1
    fi
}
if command -v apt-get >/dev/null && as_root true; then
    echo "Installing shellcheck for the provisioning tests with apt-get ..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q shellcheck
else
    echo "The provisioning tests need shellcheck: sudo apt-get install shellcheck" >&2
    exit 1
fi
