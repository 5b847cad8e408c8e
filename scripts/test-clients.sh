#!/usr/bin/env bash
# The client examples (examples/) and the drop-in SDK tests, against the real
# relay binary and a local upstream on 127.0.0.1 (see scripts/test-clients.py).
# Installs what is missing and builds the relay first. Arguments go to the
# runner: --only shell python ..., --no-sdk.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-clients.sh
swift build --product plainflow-relay 2>&1 | tail -1
.build/clients-venv/bin/python scripts/test-clients.py "$@"
