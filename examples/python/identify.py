#!/usr/bin/env python3
"""One identify to plainflow-relay over its Unix socket and over TCP, with
the standard library only (http.client). A 503 (the relay cannot store the
call now) is retried after the Retry-After it gave, with the same
message_id: the relay stores it once.

    PLAINFLOW_RELAY_SOCKET=/run/plainflow-relay/relay.sock \
    PLAINFLOW_RELAY_URL=http://127.0.0.1:8787 python3 identify.py [USER_ID]
"""
import http.client
import json
import os
import socket
import sys
import time
import uuid
from urllib.parse import urlsplit

SOCKET = os.environ.get("PLAINFLOW_RELAY_SOCKET", "/run/plainflow-relay/relay.sock")
URL = urlsplit(os.environ.get("PLAINFLOW_RELAY_URL", "http://127.0.0.1:8787"))


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket: http.client with another connect()."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def identify(via, connect, user_id, traits, attempts=5):
    """Sends one identify; returns the relay's answer once it is stored."""
    message = {"type": "identify", "user_id": user_id, "message_id": str(uuid.uuid4()), "traits": traits}
    body = json.dumps(message).encode()
    for _ in range(attempts):
        conn = connect()
        try:
            conn.request("POST", "/v1/identify", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            answer = json.loads(response.read() or b"{}")
        finally:
            conn.close()
        print(via, response.status, message["message_id"], flush=True)
        if response.status == 200 and answer.get("ok"):
            return answer
        if response.status == 503:  # not stored: the same message again, later
            time.sleep(int(response.getheader("Retry-After", "5")))
            continue
        raise RuntimeError(f"{via}: refused ({response.status}): {'; '.join(answer.get('errors', []))}")
    raise RuntimeError(f"{via}: still 503 after {attempts} attempts")


def main():
    user_id = sys.argv[1] if len(sys.argv) > 1 else "97980cfea0067"
    traits = {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "plan": "premium", "logins": 5}
    try:
        identify("unix", lambda: UnixHTTPConnection(SOCKET), user_id, traits)
        identify("tcp", lambda: http.client.HTTPConnection(URL.hostname, URL.port or 80, timeout=30), user_id, traits)
    except (OSError, RuntimeError) as e:
        sys.exit(f"identify failed: {e}")


if __name__ == "__main__":
    main()
