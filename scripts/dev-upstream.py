#!/usr/bin/env python3
"""A local stand-in for the Plainflow upstream, for trying the relay on one
machine without an account. It accepts POST /v1/batch with Basic auth,
prints each batch it receives, and answers 200 (or what --status says).

    python3 scripts/dev-upstream.py --port 8788 [--status 503] [--key KEY]
"""
import argparse
import base64
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8788)
    ap.add_argument("--status", type=int, default=200, help="status to answer with (default 200)")
    ap.add_argument("--key", default=None, help="only accept this write key (401 otherwise)")
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            auth = self.headers.get("Authorization", "")
            key = ""
            if auth.lower().startswith("basic "):
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            status = args.status
            if args.key is not None and key != args.key:
                status = 401
            try:
                batch = json.loads(body).get("batch", [])
            except ValueError:
                batch, status = [], 400
            retry = self.headers.get("X-Retry-Count")
            print(f"{self.path}: {len(batch)} message(s), key={key!r}, retry={retry}, answering {status}", flush=True)
            for m in batch:
                print("  " + json.dumps(m, sort_keys=True), flush=True)
            out = b'{"success":true}' if status == 200 else b'{"error":"refused"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    accepts = f"; 401 unless the write key is {args.key!r}" if args.key else ""
    print(f"dev upstream listening on http://{args.host}:{args.port} (answering {args.status}{accepts})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
