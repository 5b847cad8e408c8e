#!/usr/bin/env bash
# Ingest benchmark: durably acknowledged identify calls per second over HTTP.
#
# Builds the release binary, starts a local upstream and the relay (spool in a
# temp dir, synchronous=FULL), then runs wrk against POST /v1/identify with 1
# and with 32 connections, each for DURATION seconds (bounded), and prints
# requests/s, latency and how many commits the spool made (group commit).
# Only 127.0.0.1 is used. Everything started here is stopped by PID.
#
#   bench/run.sh [DURATION_SECONDS]     (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null; }
swift build -c release --scratch-path .build-release --product plainflow-relay 2>&1 | tail -1
bin=.build-release/release/plainflow-relay
work=$(mktemp -d)
python3 scripts/dev-upstream.py --port 18899 >"$work/upstream.log" 2>&1 &
up=$!
"$bin" run --tcp 127.0.0.1:18898 --unix "$work/relay.sock" --spool "$work/spool.db" \
  --upstream http://127.0.0.1:18899 --write-key bench --log-level warning >"$work/relay.log" 2>&1 &
relay=$!
cleanup() { kill "$relay" "$up" 2>/dev/null || true; wait "$relay" "$up" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:18898/healthz >/dev/null && break; sleep 0.1; done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
echo "spool: $work/spool.db on $(df --output=source "$work" | tail -1), synchronous=FULL"
commits() { curl -s http://127.0.0.1:18898/metrics | awk '/^plainflow_spool_commits_total/ {print $2}' | head -1; }
for c in 1 32; do
  before=$(commits); before=${before:-0}
  echo "--- wrk -c$c -d${duration}s POST /v1/identify"
  wrk -t"$(( c < 2 ? 1 : 2 ))" -c"$c" -d"${duration}s" --latency -s bench/identify.lua http://127.0.0.1:18898 | grep -E "Requests/sec|Latency|50%|99%|requests in|Non-2xx"
  after=$(commits); after=${after:-0}
  echo "spool commits during the run: $((${after%.*} - ${before%.*}))"
done
curl -s http://127.0.0.1:18898/v1/status; echo
