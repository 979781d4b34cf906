#!/usr/bin/env bash
# Container tooling for machines without a Docker engine (these Debian machines, CI):
#
#   scripts/container-setup.sh install     podman + runc + debootstrap from Debian (root or sudo);
#                                          a no-op when they are there
#   scripts/container-setup.sh base DIR    DIR/debian-bookworm-minbase.tar: a Debian bookworm root
#                                          file system (debootstrap --variant=minbase) to `podman
#                                          import` as the base image, since no image registry is
#                                          reachable here; kept if it exists
#   scripts/container-setup.sh check       exit 0 if podman, runc and debootstrap are installed
#
# tests/test_container.py calls `install` and `base`; podman itself then runs with
# CONTAINERS_CONF=docker/containers.conf (runc, rlimits this sandbox accepts).
# Exit status 3 means "cannot be done on this machine" and the message says why.
set -euo pipefail

SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TOOLS=(podman runc debootstrap)

missing() {
    local tool
    for tool in "${TOOLS[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || echo "$tool"
    done
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        echo "container-setup: $* needs root (not root, and sudo needs a password or is missing)" >&2
        exit 3
    fi
}

install_tools() {
    local need
    need=$(missing | tr '\n' ' ')
    [ -n "$need" ] || return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "container-setup: $need missing and there is no apt-get to install them (install podman, runc" \
             "and debootstrap by hand)" >&2
        exit 3
    fi
    echo "container-setup: installing $need(Debian packages; about 30 s)" >&2
    as_root apt-get update -qq
    # shellcheck disable=SC2086  # word splitting of the package list is wanted
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
}

make_base() {
    local dir="$1" tar rootfs
    tar="$dir/debian-$SUITE-minbase.tar"
    if [ -s "$tar" ]; then
        echo "$tar"
        return 0
    fi
    command -v debootstrap >/dev/null 2>&1 || install_tools
    [ "$(id -u)" = 0 ] || { echo "container-setup: debootstrap needs root" >&2; exit 3; }
    mkdir -p "$dir"
    rootfs=$(mktemp -d "$dir/rootfs.XXXXXX")
    # shellcheck disable=SC2064  # expand now: $rootfs is local to this function
    trap "rm -rf '$rootfs'" EXIT
    echo "container-setup: debootstrap --variant=minbase $SUITE (about 70 s)" >&2
    if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$dir/debootstrap.log" 2>&1; then
        echo "container-setup: debootstrap failed; the end of $dir/debootstrap.log:" >&2
        tail -n 15 "$dir/debootstrap.log" >&2
        exit 1
    fi
    # The images run apt-get update themselves: the package lists and .debs only add weight.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin
    tar -C "$rootfs" --numeric-owner -cf "$tar.partial" .
    mv "$tar.partial" "$tar"
    echo "$tar"
}

case "${1:-}" in
    install) install_tools ;;
    check)
        need=$(missing | tr '\n' ' ')
        [ -z "$need" ] || { echo "container-setup: missing: $need" >&2; exit 1; }
        ;;
    base)
        [ -n "${2:-}" ] || { echo "usage: $0 base DIR" >&2; exit 2; }
        make_base "$2"
        ;;
    *)
        sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
