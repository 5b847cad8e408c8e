#!/bin/sh
# One identify to plainflow-relay with the line protocol: a JSON call on one
# line, a JSON reply on one line, over the Unix socket, with socat
# (`nc -U "$SOCKET"` works too). The reply carries the status: a 503 says
# when to retry ("retry_after", seconds); the retry keeps the message_id.
#
#   PLAINFLOW_RELAY_SOCKET=/run/plainflow-relay/relay.sock ./identify-line.sh [USER_ID]
set -eu
SOCKET=${PLAINFLOW_RELAY_SOCKET:-/run/plainflow-relay/relay.sock}
USER_ID=${1:-97980cfea0067}
id=$(cat /proc/sys/kernel/random/uuid)
line='{"type":"identify","user_id":"'"$USER_ID"'","message_id":"'"$id"'",'
line=$line'"traits":{"firstName":"Ada","lastName":"Lovelace","email":"ada@example.com","plan":"premium","logins":5}}'

for attempt in 1 2 3 4 5; do
    # socat sends the line, half-closes, and prints the reply; the relay
    # closes once it has answered. -t: wait that long for the reply.
    reply=$(printf '%s\n' "$line" | socat -t 30 - "UNIX-CONNECT:$SOCKET")
    status=$(printf '%s' "$reply" | sed -n 's/.*"status":\([0-9]*\).*/\1/p')
    case $reply in *'"ok":true'*) status=200 ;; esac
    echo "unix $status $id"
    case $status in
    200) exit 0 ;;
    503) wait=$(printf '%s' "$reply" | sed -n 's/.*"retry_after":\([0-9]*\).*/\1/p')
         sleep "${wait:-5}" ;;
    *) echo "unix: refused: $reply" >&2
       exit 1 ;;
    esac
done
echo "unix: still 503 after $attempt attempts" >&2
exit 1
