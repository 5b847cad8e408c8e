#!/usr/bin/env bash
# Runs the relay with etc/relay.dev.toml and a local upstream that prints
# what it receives: a whole round trip on one machine, no account needed.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p run
if (exec 3<>/dev/tcp/127.0.0.1/8788) 2>/dev/null; then
  echo "port 8788 is already in use: is a local upstream started by hand (python3 scripts/dev-upstream.py) still running? stop it (Ctrl-C in its terminal), then run this again" >&2
  exit 1
fi
python3 scripts/dev-upstream.py --port 8788 &
upstream=$!
trap 'kill $upstream 2>/dev/null || true' EXIT
cat <<TXT

  relay:    http://127.0.0.1:8787 and unix socket run/relay.sock
  upstream: http://127.0.0.1:8788 (this terminal prints each batch it receives)

  try, from another terminal:
    curl -s -X POST http://127.0.0.1:8787/v1/identify -d '{"userId":"97980cfea0067","traits":{"name":"Mark Twain","plan":"premium"}}'
    echo '{"type":"identify","user_id":"42","traits":{"email":"a@b.c"}}' | socat - UNIX-CONNECT:run/relay.sock
    curl -s http://127.0.0.1:8787/v1/status
    bin/plainflow-relay status          # the operator commands, from this directory
    bin/plainflow-relay spool stats

TXT
bin/plainflow-relay run
