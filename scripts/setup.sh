#!/usr/bin/env bash
# Installs what building and testing plainflow-relay needs on Debian 12
# (Swift 6 itself is expected on PATH) and builds the debug binary.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/need-packages.sh libcurl4-openssl-dev libsqlite3-dev pkg-config python3 socat curl
command -v swift >/dev/null || { echo "swift not found: install Swift 6 (https://www.swift.org/install/linux/)" >&2; exit 1; }
swift build
