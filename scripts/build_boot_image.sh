#!/usr/bin/env bash
# Build (once) what the boot test (tests/test_boot.py) needs, into a cache outside the clone:
#   rootfs-<key>/   a minimal Debian 12 root file system (debootstrap) with systemd and every OS
#                   package scripts/provision.sh installs, so it provisions offline;
#   wheels-<key>/   a wheelhouse of requirements.txt for the image's Python (3.11).
# Each is keyed by what it is made of, built under a temporary name and renamed when complete:
# a cache directory that exists is whole. Prints the two paths, one per line: rootfs, then wheels.
#
#   scripts/build_boot_image.sh [CACHE_DIR]        default /var/cache/sweeplab-test
#
# Needs root, debootstrap and systemd-nspawn (apt-get install debootstrap systemd-container), and
# a host Python 3.11 (binary wheels must match the image's python3). MIRROR and SECURITY_MIRROR
# may name other Debian mirrors.
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${1:-/var/cache/sweeplab-test}
release=bookworm
mirror=${MIRROR:-http://deb.debian.org/debian}
security_mirror=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
python=${PYTHON:-python3}
# What the booted machine needs besides what provision.sh installs: an init, D-Bus, and the tools
# the test runs inside it (ps, ip).
boot_packages=(systemd systemd-sysv dbus procps iproute2 util-linux ca-certificates)
# What provision.sh installs, should it not say (`provision.sh --print-packages` does).
fallback_packages=(python3 python3-venv curl rabbitmq-server)

log() { printf '[build_boot_image] %s\n' "$*" >&2; }

provision_packages() {
    local listed
    if [[ -f scripts/provision.sh ]] && listed=$(bash scripts/provision.sh --print-packages) &&
        [[ -n $listed ]]; then
        echo "$listed"
    else
        printf '%s\n' "${fallback_packages[@]}"
    fi
}

mkdir -p "$cache"
mapfile -t packages < <({ provision_packages; printf '%s\n' "${boot_packages[@]}"; } |
    tr ', ' '\n' | sed '/^$/d' | sort -u)
rootfs_key=$(printf '%s\n' "v2" "$release" "${packages[@]}" | sha256sum | cut -c1-16)
rootfs=$cache/rootfs-$rootfs_key
base=$cache/base-$release

# COMMAND... in a cgroup of its own, removed after: nspawn --keep-unit puts the container's
# cgroups under its own, and the host's root cgroup is nobody's to fill.
in_own_cgroup() {
    local trees=(/sys/fs/cgroup) tree code=0 group=sweeplab-build-$$
    [[ -d /sys/fs/cgroup/unified ]] && trees=(/sys/fs/cgroup/unified /sys/fs/cgroup/systemd)
    for tree in "${trees[@]}"; do mkdir -p "$tree/$group"; done
    # shellcheck disable=SC2016
    sh -c 'for tree; do [ "$tree" = -- ] && break; echo $$ >"$tree/cgroup.procs"; shift; done
           shift; exec "$@"' sh "${trees[@]/%//$group}" -- "$@" || code=$?
    for tree in "${trees[@]}"; do find "$tree/$group" -depth -type d -exec rmdir {} + || true; done
    return "$code"
}

# The bare system (debootstrap), kept apart: a change of package list starts from it.
build_base() {
    local tmp=$cache/.base-$release.$$
    rm -rf "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    log "debootstrap $release into $tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus "$release" "$tmp" "$mirror" \
        >"$cache/debootstrap.log" 2>&1 || { tail -n 30 "$cache/debootstrap.log" >&2; exit 1; }
    mv "$tmp" "$base"
    trap - EXIT
}

build_rootfs() {
    local tmp=$cache/.rootfs-$rootfs_key.$$ started=$SECONDS
    [[ -d $base ]] || build_base
    rm -rf "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    log "installing into $tmp: ${packages[*]}"
    cp -a --reflink=auto "$base" "$tmp"
    # No service may start while we install: there is no init in the image yet, and an init script
    # run here would start RabbitMQ on the host.
    printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
    chmod 755 "$tmp/usr/sbin/policy-rc.d"
    # As a Debian 12 host has it: the release, its updates and its security updates.
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
        "$mirror" "$release" "$mirror" "$release" "$security_mirror" "$release" \
        >"$tmp/etc/apt/sources.list"
    in_own_cgroup systemd-nspawn --quiet --register=no --keep-unit --directory="$tmp" \
        --resolv-conf=copy-host --setenv=DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends "$@" && apt-get clean' \
        sh "${packages[@]}" >"$cache/apt.log" 2>&1 || { tail -n 30 "$cache/apt.log" >&2; exit 1; }
    rm -f "$tmp/usr/sbin/policy-rc.d" "$tmp/etc/hostname"
    rm -rf "$tmp"/var/lib/apt/lists/* "$tmp"/var/log/*.log
    # Each copy that boots makes its own machine id.
    : >"$tmp/etc/machine-id"
    printf '%s\n' "${packages[@]}" >"$tmp/.sweeplab-packages"
    mv "$tmp" "$rootfs"
    trap - EXIT
    log "rootfs built in $((SECONDS - started)) s: $rootfs ($(du -sh "$rootfs" | cut -f1))"
}

build_wheels() {
    local wheels=$1 tmp=$cache/.wheels-$wheels_key.$$ started=$SECONDS
    rm -rf "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    log "pip wheel -r requirements.txt into $tmp"
    "$python" -m pip wheel --quiet --disable-pip-version-check -r requirements.txt -w "$tmp" \
        >"$cache/pip.log" 2>&1 || { tail -n 30 "$cache/pip.log" >&2; exit 1; }
    mv "$tmp" "$wheels"
    trap - EXIT
    log "wheelhouse built in $((SECONDS - started)) s: $wheels ($(du -sh "$wheels" | cut -f1))"
}

[[ -d $rootfs ]] || build_rootfs

version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ $version == 3.11 ]] || { log "$python is $version; Debian 12's python3 is 3.11 (set PYTHON)"; exit 1; }
wheels_key=$( { echo "v1 cp311"; cat requirements.txt; } | sha256sum | cut -c1-16)
wheels=$cache/wheels-$wheels_key
[[ -d $wheels ]] || build_wheels "$wheels"

# Older builds (another package list, other requirements) go: the cache holds one of each.
for old in "$cache"/rootfs-* "$cache"/wheels-*; do
    [[ -d $old && $old != "$rootfs" && $old != "$wheels" ]] || continue
    log "removing an older build: $old"
    rm -rf "$old"
done

echo "$rootfs"
echo "$wheels"
