#!/usr/bin/env bash
# The system tools the tests use besides RabbitMQ and Chromium: shellcheck (tests/test_provision.py
# lints the shell scripts), systemd-nspawn and debootstrap (tests/test_boot.py boots Debian 12
# machines). Installs the missing ones with apt-get where we may (root or password-less sudo),
# or says what to run and stops.
set -euo pipefail
declare -A package_of=([shellcheck]=shellcheck [systemd-nspawn]=systemd-container
                       [debootstrap]=debootstrap)
missing=()
for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null || missing+=("${package_of[$tool]}")
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else
        return 1
    fi
}
if command -v apt-get >/dev/null && as_root true; then
    echo "Installing ${missing[*]} for the tests with apt-get ..."
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
    echo "The tests need: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
