#!/usr/bin/env bash
# The benchmark harness (issue 7 item 1). Not part of CI.
#
#   bench/harness.sh            full mode: 3 runs of every measurement, ≤ 15 min
#   bench/harness.sh --quick    1 run each, smaller backlogs, ≤ 4 min
#
# Installs what it needs (Debian packages, PyPI), builds the relay's release
# binary from this checkout, the C drivers and the SwiftNIO ceiling server,
# runs bench/harness.py (each figure against its reference in the same run),
# then bench/report.py writes BENCHMARKS.md, bench/benchmarks.png and the raw
# JSON in bench/results/. Run as root (apt-get, and PostgreSQL as the
# postgres user). Only 127.0.0.1 and Unix sockets are used; everything it
# starts is stopped by PID; temp dirs (under /var/tmp) are removed.
#
# Environment: BENCH_SKIP_INSTALL=1 skips apt-get/pip (packages already there).
# An A/B of one measurement against another build, by hand (no report):
#   PLAINFLOW_BENCH_BIN=/path/to/plainflow-relay python3 bench/harness.py --only m5
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode_args=("$@")
say() { echo "[$(date +%H:%M:%S)] $*"; }

if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
  say "installing packages (apt-get, pip)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || say "apt-get update failed (continuing with what is installed)"
  apt-get install -y -qq postgresql nginx syslog-ng-core syslog-ng-mod-http wrk sqlite3 libsqlite3-dev \
    libcurl4-openssl-dev gcc python3 >/dev/null || say "apt-get install failed; measurements needing a missing tool will report it"
  # The packages' own services are not used: the harness runs private instances.
  for svc in postgresql nginx syslog-ng; do
    command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null && systemctl stop "$svc" 2>/dev/null
  done
  python3 -m pip install -q --disable-pip-version-check matplotlib segment-analytics-python 2>&1 | grep -v -i "warning" || true
  python3 -c "import matplotlib" 2>/dev/null || apt-get install -y -qq python3-matplotlib >/dev/null || true
fi

say "building the relay as the .deb ships it (release, static Swift runtime, stripped) from $root"
rm -f .build-deb/plainflow-relay  # never measure a stale build
# What the binary is built from, recorded now: later edits to the tree do not change it.
PLAINFLOW_BENCH_BUILT_FROM="$(git rev-parse --short HEAD)$(git status --porcelain Sources Package.swift | grep -q . && echo ' (with uncommitted changes to Sources)')"
export PLAINFLOW_BENCH_BUILT_FROM
packaging/build-deb.sh --binary-only >/tmp/plainflow-bench-build.$$.log 2>&1 ||
  { tail -n 20 /tmp/plainflow-bench-build.$$.log; say "the relay did not build; nothing to measure"; exit 1; }
tail -n 2 /tmp/plainflow-bench-build.$$.log
[ -x .build-deb/plainflow-relay ] || { say "the relay did not build; nothing to measure"; exit 1; }

say "building the drivers (gcc) and the SwiftNIO ceiling server"
mkdir -p .build-release/bench-drivers
gcc -O2 -o .build-release/bench-drivers/loadgen bench/drivers/loadgen.c -lpthread &&
gcc -O2 -o .build-release/bench-drivers/sink bench/drivers/sink.c -lpthread &&
gcc -O2 -o .build-release/bench-drivers/sqlite_bench bench/drivers/sqlite_bench.c -lsqlite3 ||
  { say "the C drivers did not build"; exit 1; }
swift build -c release --package-path bench/nio-ceiling --scratch-path bench/nio-ceiling/.build --product NIOCeiling 2>&1 | tail -n 3 ||
  say "the NIO ceiling did not build; that measurement will report it"

say "load before measuring: $(uptime)"
python3 bench/harness.py --command "bench/harness.sh" "${mode_args[@]}" | tee /tmp/plainflow-bench-harness.$$.log
rc=${PIPESTATUS[0]}
result=$(tail -n 1 /tmp/plainflow-bench-harness.$$.log)
rm -f /tmp/plainflow-bench-harness.$$.log
if [ "$rc" -ne 0 ] || [ ! -f "$result" ]; then
  say "the harness failed (rc $rc)"; exit 1
fi
python3 bench/report.py "$result"
