#!/usr/bin/env bash
# Fuzzes the message rules (the JSON parser and the normalizer) with
# libFuzzer and AddressSanitizer for SECONDS (default 60), seeded with the
# seed document's examples and SDK-shaped calls in fuzz/corpus. The entry
# point and its properties are in fuzz/FuzzMessage.swift; the module is
# compiled on its own (RelayMessage is pure Swift), outside the package
# build. A crash leaves its input in .build-fuzz/ and fails the script.
#
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=.build-fuzz
mkdir -p "$out/corpus"
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name RelayMessage \
  $(find Sources/RelayMessage -name '*.swift' | sort) fuzz/FuzzMessage.swift \
  -o "$out/fuzz-message" 2>&1 | grep -v "Cannot export local symbol" || true
test -x "$out/fuzz-message"
# New inputs go to $out/corpus (not committed); fuzz/corpus holds the seeds.
# Leak detection is off: the Swift runtime keeps its metadata caches for the
# life of the process, which LeakSanitizer reports as leaks at exit.
ASAN_OPTIONS=detect_leaks=0 "$out/fuzz-message" -detect_leaks=0 -max_total_time="$seconds" -max_len=16384 -timeout=5 -rss_limit_mb=2048 \
  -artifact_prefix="$out/" -print_final_stats=1 "$out/corpus" fuzz/corpus 2>&1 | tail -15
