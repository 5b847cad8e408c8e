#!/bin/sh
# One identify to plainflow-relay over its Unix socket and over TCP, with curl.
# A 503 (the relay cannot store the call now) is retried after the
# Retry-After it gave, with the same message_id: the relay stores it once.
#
#   PLAINFLOW_RELAY_SOCKET=/run/plainflow-relay/relay.sock PLAINFLOW_RELAY_URL=http://127.0.0.1:8787 \
#     ./identify.sh [USER_ID]
set -eu
SOCKET=${PLAINFLOW_RELAY_SOCKET:-/run/plainflow-relay/relay.sock}
URL=${PLAINFLOW_RELAY_URL:-http://127.0.0.1:8787}
USER_ID=${1:-97980cfea0067}   # (a real script would JSON-escape it: jq -n --arg id ...)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# identify VIA URL [curl options...]
identify() {
    via=$1 url=$2
    shift 2
    id=$(cat /proc/sys/kernel/random/uuid)
    body='{"type":"identify","user_id":"'"$USER_ID"'","message_id":"'"$id"'",'
    body=$body'"traits":{"firstName":"Ada","lastName":"Lovelace","email":"ada@example.com","plan":"premium","logins":5}}'
    for attempt in 1 2 3 4 5; do
        status=$(curl -sS "$@" -o "$tmp/answer" -D "$tmp/headers" -w '%{http_code}' \
            -H 'Content-Type: application/json' --data-binary "$body" "$url/v1/identify")
        echo "$via $status $id"
        case $status in
        200) grep -q '"ok":true' "$tmp/answer" && return 0 ;;
        503) wait=$(tr -d '\r' <"$tmp/headers" | sed -n 's/^[Rr]etry-[Aa]fter: *//p')
             sleep "${wait:-5}"
             continue ;;
        esac
        echo "$via: refused ($status): $(cat "$tmp/answer")" >&2
        return 1
    done
    echo "$via: still 503 after $attempt attempts" >&2
    return 1
}

identify unix http://localhost --unix-socket "$SOCKET"
identify tcp "$URL"
