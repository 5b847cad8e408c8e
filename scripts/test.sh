#!/usr/bin/env bash
# The whole test suite: unit tests of every module and end-to-end tests that
# run the real binary against a local HTTP upstream. Builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The end-to-end tests start .build/debug/plainflow-relay: build it first.
swift build --product plainflow-relay
swift test 2>&1 | tee .build/test.log
