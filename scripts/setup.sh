#!/usr/bin/env bash
# Installs what building and testing plainflow-relay needs on Debian 12
# (Swift 6 itself is expected on PATH) and builds the debug binary.
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-prometheus-client: the end-to-end test parses /metrics with Prometheus's own parser.
./scripts/need-packages.sh libcurl4-openssl-dev libsqlite3-dev pkg-config python3 python3-prometheus-client socat curl
command -v swift >/dev/null || { echo "swift not found: install Swift 6 (https://www.swift.org/install/linux/)" >&2; exit 1; }
swift build

# bin/plainflow-relay: the debug build with the development configuration, so
# that the README's operator commands work from the clone as printed
# (`bin/plainflow-relay status`, `bin/plainflow-relay spool stats`, ...).
# Its paths (run/spool.db, run/relay.sock) are relative to etc/, where the
# file is, so it finds the same spool and socket from any directory.
mkdir -p bin
cat > bin/plainflow-relay <<SH
#!/bin/sh
# Made by scripts/setup.sh (make run, make build): the debug build, with
# etc/relay.dev.toml unless --config or PLAINFLOW_RELAY_CONFIG says otherwise.
export PLAINFLOW_RELAY_CONFIG="\${PLAINFLOW_RELAY_CONFIG:-$PWD/etc/relay.dev.toml}"
exec "$PWD/.build/debug/plainflow-relay" "\$@"
SH
chmod +x bin/plainflow-relay
