#!/usr/bin/env bash
# Installs what the client tests (scripts/test-clients.sh) need, only what is
# missing: each example's interpreter or compiler from Debian's packages, and
# the two Segment-style SDKs from PyPI into a venv, .build/clients-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> the Debian package that provides it
packages=(curl:curl socat:socat python3:python3 node:nodejs perl:perl php:php-cli ruby:ruby
          go:golang-go javac:openjdk-17-jdk-headless cc:gcc tclsh:tcl)
need=()
for entry in "${packages[@]}"; do
    command -v "${entry%%:*}" >/dev/null || need+=("${entry#*:}")
done
if ((${#need[@]})); then
    echo "installing: ${need[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The SDKs, pinned: the versions whose sources docs/CLIENTS.md describes.
venv=.build/clients-venv
sdks=(segment-analytics-python==2.4.0 rudder-sdk-python==2.1.9)
if ! "$venv/bin/python" -c 'import segment.analytics, rudderstack.analytics' 2>/dev/null; then
    echo "installing into $venv: ${sdks[*]}"
    mkdir -p .build
    if ! python3 -m venv "$venv" 2>/dev/null; then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check "${sdks[@]}"
fi
