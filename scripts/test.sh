#!/usr/bin/env bash
# The whole test suite: unit tests of every module, end-to-end tests that
# run the real binary against a local HTTP upstream, and the client examples
# and SDKs against it (scripts/test-clients.sh). Builds first.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The end-to-end tests start .build/debug/plainflow-relay: build it first.
swift build --product plainflow-relay
# The client examples and SDKs against that binary (about 30 s, plus their
# toolchains' install the first time); a failure there fails the run after
# the Swift tests have run too.
clients=0
./scripts/test-clients.sh || clients=$?
swift test 2>&1 | tee .build/test.log
exit $clients
