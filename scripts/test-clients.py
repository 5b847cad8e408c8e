#!/usr/bin/env python3
"""Client tests: every example in examples/ and two Segment-style SDKs,
against the real relay binary and a local upstream on 127.0.0.1.

    scripts/test-clients.sh            # installs what is needed, builds, runs this
    python scripts/test-clients.py [--relay BIN] [--only NAME ...] [--no-sdk]

Each example sends one identify over the Unix socket and one over TCP; the
test checks what it printed (one line per attempt: VIA STATUS MESSAGE_ID),
its exit status, and that each call arrived upstream once, canonical. Then
every example runs again while the relay's spool is full (a tiny
spool.max_bytes, on_full = "reject", the upstream answering 503), so each
first gets a real 503 with Retry-After, waits, and resends the same
message_id once the upstream takes the backlog.

The SDK tests (segment-analytics-python, rudder-sdk-python: imported from
the venv scripts/setup-clients.sh makes) point each SDK at the relay by its
host setting only and check identify, track, page, screen, group and alias
upstream, gzip, batching, a historical timestamp, the retry of a 503 and a
refused call given up at once. Ends with "N passed, N failed".
"""
import argparse
import base64
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EXPECTED_TRAITS = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "plan": "premium",
                   "logins": 5, "name": "Ada Lovelace"}
CAMEL_TOP_LEVEL = {"userId", "anonymousId", "messageId", "groupId", "previousId", "sentAt", "receivedAt"}


def log(*args):
    print(*args, flush=True)


def wait_until(condition, seconds, step=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


class Results:
    def __init__(self):
        self.passed, self.failed = [], []

    def record(self, name, problems, seconds):
        if problems:
            self.failed.append(name)
            log(f"FAIL {name} ({seconds:.1f} s)")
            for p in problems:
                log(f"     {p}")
        else:
            self.passed.append(name)
            log(f"ok   {name} ({seconds:.1f} s)")


# --- The upstream -----------------------------------------------------------

class Upstream:
    """POST /v1/batch on 127.0.0.1: records the messages of every batch it
    answers 2xx (with the batch's write key), answers `status`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.status = 200
        self.messages = []  # (write key, message)
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else every answer waits ~40 ms

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                auth = self.headers.get("Authorization", "")
                key = base64.b64decode(auth[6:]).decode().split(":")[0] if auth.startswith("Basic ") else None
                with upstream.lock:
                    status = upstream.status
                    if status == 200:
                        upstream.messages += [(key, m) for m in json.loads(body)["batch"]]
                out = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, status):
        with self.lock:
            self.status = status

    def delivered(self, message_id):
        with self.lock:
            return [(k, m) for k, m in self.messages if m.get("message_id") == message_id]

    def stop(self):
        self.server.shutdown()


# --- The relay --------------------------------------------------------------

class Relay:
    """The real binary with its own spool and socket in `directory`."""

    def __init__(self, binary, directory, upstream, write_key, max_bytes):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True)
        self.socket = str(self.directory / "relay.sock")
        self.log_path = self.directory / "relay.log"
        key = f'write_key = "{write_key}"' if write_key else ""
        config = self.directory / "relay.toml"
        config.write_text(f"""
[listen]
unix = "{self.socket}"
[upstream]
url = "{upstream.url}"
{key}
flush_interval_ms = 50
retry_base_ms = 50
retry_cap_ms = 250
[spool]
path = "{self.directory / 'spool.db'}"
max_bytes = {max_bytes}
on_full = "reject"
""")
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen([binary, "run", "--config", str(config), "--tcp", "127.0.0.1:0"],
                                            stdout=out, stderr=subprocess.STDOUT)
        self.url = None

        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"the relay exited at start:\n{self.log()}")
            if self.url is None:
                m = re.search(r"tcp 127\.0\.0\.1:(\d+)", self.log())
                if not m:
                    return False
                self.url = f"http://127.0.0.1:{m.group(1)}"
            try:
                return urllib.request.urlopen(self.url + "/healthz", timeout=2).status == 200
            except OSError:
                return False

        if not wait_until(ready, 20):
            self.stop()
            raise RuntimeError(f"the relay did not answer /healthz within 20 s:\n{self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace")

    def post(self, path, message, key=None):
        """POSTs over TCP; returns (status, headers, answer)."""
        request = urllib.request.Request(self.url + path, data=json.dumps(message).encode(),
                                         headers={"Content-Type": "application/json"})
        if key:
            request.add_header("Authorization", "Basic " + base64.b64encode(f"{key}:".encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, r.headers, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, e.headers, json.loads(e.read() or b"{}")

    def fill(self, key=None, limit=400):
        """Sends filler calls (user_id "filler") until the relay answers 503
        even to a small one: the spool is full while the upstream refuses.
        Returns the last 503's Retry-After."""
        sent = 0
        for size in (4000, 1000, 250, 0):  # big calls fill it fast, small ones fill the rest
            while True:
                sent += 1
                if sent > limit:
                    raise RuntimeError(f"the spool took {limit} filler calls without a 503")
                status, headers, _ = self.post("/v1/identify", {"user_id": "filler", "traits": {"bio": "x" * size}}, key)
                if status == 503:
                    break
                if status != 200:
                    raise RuntimeError(f"a filler call got {status}")
        return headers.get("Retry-After")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- The examples -----------------------------------------------------------

class Example:
    def __init__(self, name, run, vias=("unix", "tcp"), build=None, tools=()):
        self.name, self.run, self.vias, self.build, self.tools = name, run, vias, build, tools
        self.problem = None  # why it cannot run (a missing tool, a failed build)


def examples(build_dir):
    e = ROOT / "examples"
    b = str(build_dir)
    return [
        Example("shell", ["sh", str(e / "shell/identify.sh")], tools=["curl"]),
        Example("shell-line", ["sh", str(e / "shell/identify-line.sh")], vias=("unix",), tools=["socat"]),
        Example("python", ["python3", str(e / "python/identify.py")], tools=["python3"]),
        Example("node", ["node", str(e / "node/identify.js")], tools=["node"]),
        Example("perl", ["perl", str(e / "perl/identify.pl")], tools=["perl"]),
        Example("php", ["php", str(e / "php/identify.php")], tools=["php"]),
        Example("ruby", ["ruby", str(e / "ruby/identify.rb")], tools=["ruby"]),
        Example("go", [f"{b}/identify-go"], tools=["go"],
                build=(["go", "build", "-o", f"{b}/identify-go", "."], e / "go")),
        Example("java", ["java", "-cp", f"{b}/java", "Identify"], tools=["javac", "java"],
                build=(["javac", "-Xlint:all", "-Werror", "-d", f"{b}/java", "Identify.java"], e / "java")),
        Example("c", [f"{b}/identify-c"], tools=["cc"],
                build=(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", f"{b}/identify-c", "identify.c"], e / "c")),
        Example("tcl", ["tclsh", str(e / "tcl/identify.tcl")], tools=["tclsh", "socat"]),
    ]


def prepare(example):
    missing = [t for t in example.tools if shutil.which(t) is None]
    if missing:
        example.problem = f"not installed: {', '.join(missing)} (scripts/setup-clients.sh installs it)"
        return
    if example.build:
        command, cwd = example.build
        started = time.monotonic()
        r = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
        if r.returncode != 0 or r.stderr.strip():
            example.problem = f"build failed or warned: {' '.join(command)}\n{r.stdout}{r.stderr}"
        else:
            log(f"     built {example.name} in {time.monotonic() - started:.1f} s")


def start(example, relay, user_id, out_path):
    env = dict(os.environ, PLAINFLOW_RELAY_SOCKET=relay.socket, PLAINFLOW_RELAY_URL=relay.url)
    out = open(out_path, "w")
    return subprocess.Popen(example.run + [user_id], stdout=out, stderr=subprocess.STDOUT, env=env, text=True), out


def attempts(output):
    """The VIA STATUS MESSAGE_ID lines of an example's output."""
    return [(m.group(1), int(m.group(2)), m.group(3))
            for m in re.finditer(r"^(unix|tcp) (\d+) (\S+)$", output, re.M)]


def check_identify(upstream, message_id, user_id):
    """What arrived upstream for one example call; [] when it is right."""
    if not wait_until(lambda: upstream.delivered(message_id), 10):
        return [f"{message_id} never arrived upstream"]
    time.sleep(0.1)  # a second copy, if any, would come in the same flush
    got = upstream.delivered(message_id)
    problems = [f"{message_id} arrived {len(got)} times"] if len(got) != 1 else []
    m = got[0][1]
    expected_keys = {"type", "user_id", "message_id", "traits", "received_at", "timestamp"}
    if set(m) != expected_keys:
        problems.append(f"fields {sorted(m)}, expected {sorted(expected_keys)}")
    if m.get("type") != "identify" or m.get("user_id") != user_id:
        problems.append(f"type/user_id {m.get('type')}/{m.get('user_id')}, expected identify/{user_id}")
    if m.get("traits") != EXPECTED_TRAITS:
        problems.append(f"traits {m.get('traits')}, expected {EXPECTED_TRAITS}")
    if not ISO_Z.match(str(m.get("received_at"))) or m.get("timestamp") != m.get("received_at"):
        problems.append(f"received_at/timestamp {m.get('received_at')}/{m.get('timestamp')}")
    return problems


def judge(example, upstream, user_id, output, returncode, expect_503):
    problems = []
    if returncode != 0:
        problems.append(f"exit status {returncode}")
    lines = attempts(output)
    for via in example.vias:
        mine = [(status, mid) for v, status, mid in lines if v == via]
        if not mine:
            problems.append(f"{via}: no call")
            continue
        ids = {mid for _, mid in mine}
        if len(ids) != 1:
            problems.append(f"{via}: a retry changed the message_id: {sorted(ids)}")
        if mine[-1][0] != 200:
            problems.append(f"{via}: last answer {mine[-1][0]}")
        else:
            problems += [f"{via}: {p}" for p in check_identify(upstream, mine[-1][1], user_id)]
    first = example.vias[0]
    if expect_503 and not any(v == first and s == 503 for v, s, _ in lines):
        problems.append(f"{first}: never got the 503 the full spool answers")
    if problems:
        problems.append("output:\n       " + output.strip().replace("\n", "\n       "))
    return problems


def run_examples(relay, upstream, chosen, results, work):
    # One after the other, with room in the spool.
    for ex in chosen:
        started = time.monotonic()
        name = f"example {ex.name}: identify over {' and '.join(ex.vias)}"
        if ex.problem:
            results.record(name, [ex.problem], 0)
            continue
        out_path = work / f"{ex.name}.out"
        process, out = start(ex, relay, f"{ex.name}-1", out_path)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        out.close()
        results.record(name, judge(ex, upstream, f"{ex.name}-1", out_path.read_text(), process.returncode, False),
                       time.monotonic() - started)

    # All at once, against a full spool: each gets a 503, waits its
    # Retry-After, and resends once the upstream has taken the backlog.
    runnable = [ex for ex in chosen if not ex.problem]
    if not runnable:
        return
    started = time.monotonic()
    upstream.answer(503)
    try:
        retry_after = relay.fill()
    except RuntimeError as e:
        upstream.answer(200)
        for ex in runnable:
            results.record(f"example {ex.name}: 503 retried after Retry-After", [str(e)], 0)
        return
    log(f"     spool full (Retry-After: {retry_after}); running {len(runnable)} examples against it")
    running = []
    for ex in runnable:
        out_path = work / f"{ex.name}-503.out"
        process, out = start(ex, relay, f"{ex.name}-2", out_path)
        running.append((ex, process, out, out_path))

    def refused_or_done(entry):
        ex, process, _, out_path = entry
        return process.poll() is not None or any(s == 503 for _, s, _ in attempts(out_path.read_text()))

    wait_until(lambda: all(refused_or_done(e) for e in running), 45)
    upstream.answer(200)  # the backlog drains, and there is room again
    for ex, process, out, out_path in running:
        try:
            process.wait(max(1, 60 - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        out.close()
        results.record(f"example {ex.name}: 503 retried after Retry-After, same message_id",
                       judge(ex, upstream, f"{ex.name}-2", out_path.read_text(), process.returncode, True),
                       time.monotonic() - started)


# --- The SDKs ---------------------------------------------------------------

class Recorder:
    """Wraps an SDK's requests session: what the SDK sent and was answered
    (the SDK and the relay are untouched)."""

    def __init__(self, request_module):
        self.lock = threading.Lock()
        self.calls = []  # (headers, batch body, status), one per request
        session = request_module._session
        original = session.post

        def post(url, data=None, headers=None, **kwargs):
            response = original(url, data=data, headers=headers, **kwargs)
            body = gzip.decompress(data) if (headers or {}).get("Content-Encoding") == "gzip" else data
            with self.lock:
                self.calls.append((dict(headers or {}), json.loads(body), response.status_code))
            return response

        session.post = post

    def for_message(self, message_id):
        """(request number, headers, status) of every request that carried the message."""
        with self.lock:
            return [(n, h, s) for n, (h, b, s) in enumerate(self.calls) if any(m.get("messageId") == message_id for m in b["batch"])]


class SDK:
    def __init__(self, name, make_client, recorder, write_key, **expect):
        self.name, self.make_client, self.recorder, self.write_key, self.expect = name, make_client, recorder, write_key, expect


def sdk_checks(sdk, upstream, sent, kind):
    """Problems with one SDK call as delivered: `sent` is the SDK's own message."""
    mid = sent["messageId"]
    if not wait_until(lambda: upstream.delivered(mid), 10):
        return [f"{kind} {mid} never arrived upstream"], None
    got = upstream.delivered(mid)
    problems = [f"{kind} arrived {len(got)} times"] if len(got) != 1 else []
    key, m = got[0]
    if key != sdk.write_key:
        problems.append(f"{kind}: upstream got write key {key!r}, the SDK's is {sdk.write_key!r}")
    if CAMEL_TOP_LEVEL & set(m) or "sent_at" in m or "anonymous_id" in m:
        problems.append(f"{kind}: not canonical: {sorted(m)}")
    checks = {"type": kind, "message_id": mid, "user_id": str(sent.get("userId")), "timestamp": sent["timestamp"],
              "context": {k: v for k, v in sent["context"].items() if not (kind == "identify" and k == "traits")},
              "integrations": sent["integrations"]}
    for field in ("event", "properties", "name", "category", "channel"):
        if field in sent:
            checks[field] = sent[field]
    if "groupId" in sent:
        checks["group_id"] = str(sent["groupId"])
    if "previousId" in sent:
        checks["previous_id"] = str(sent["previousId"])
    for field, value in checks.items():
        if m.get(field) != value:
            problems.append(f"{kind}: {field} is {m.get(field)!r}, sent {value!r}")
    if not ISO_Z.match(str(m.get("received_at"))):
        problems.append(f"{kind}: received_at {m.get('received_at')!r}")
    return problems, m


def run_sdk(sdk, upstream, results):
    client = sdk.make_client()
    started = time.monotonic()
    user = f"{sdk.name}-user"
    traits = {"firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com", "createdAt": datetime(2020, 1, 2, 3, 4, 5),
              "company": {"name": "Analytical Engines", "employeeCount": 12}}
    calls = [
        ("identify", client.identify(user, traits, context={"ip": "203.0.113.7"})[1]),
        ("track", client.track(user, "Report Exported", {"format": "csv", "rows": 1200})[1]),
        ("page", client.page(user, "Docs", "Install", {"path": "/docs/install"})[1]),
        ("screen", client.screen(user, "Settings", "Privacy", {"tab": "privacy"})[1]),
        ("group", client.group(user, "g-42", {"name": "Analytical Engines", "industry": "computing"})[1]),
        ("alias", client.alias("anon-7", user)[1]),
        ("historical", client.identify(user, {"plan": "premium"}, timestamp=datetime(2019, 5, 6, 7, 8, 9, tzinfo=timezone.utc))[1]),
    ]
    client.flush()
    problems = []
    for kind, sent in calls:
        p, delivered = sdk_checks(sdk, upstream, sent, "identify" if kind == "historical" else kind)
        problems += p
        if kind == "identify" and delivered:
            expected = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "created_at": "2020-01-02T03:04:05",
                        "company": {"name": "Analytical Engines", "employee_count": 12}, "name": "Ada Lovelace"}
            if delivered.get("traits") != expected:
                problems.append(f"identify: traits {delivered.get('traits')}, expected {expected}")
        if kind == "group" and delivered and delivered.get("traits") != {"name": "Analytical Engines", "industry": "computing"}:
            problems.append(f"group: traits {delivered.get('traits')}")
        if kind == "historical" and delivered and not delivered.get("timestamp", "").startswith("2019-05-06T07:08:09"):
            problems.append(f"historical identify: timestamp {delivered.get('timestamp')!r}")
    encodings = {h.get("Content-Encoding") for _, h, _ in sdk.recorder.for_message(calls[0][1]["messageId"])}
    if encodings != {sdk.expect["encoding"]}:
        problems.append(f"the SDK sent Content-Encoding {encodings}, expected {sdk.expect['encoding']}")
    results.record(f"sdk {sdk.name}: identify, track, page, screen, group, alias and a historical call arrive canonical",
                   problems, time.monotonic() - started)

    # Batching: 150 calls queued at once go in a few requests and all arrive, once.
    started = time.monotonic()
    sent = [client.track(user, "Row Imported", {"row": i})[1] for i in range(150)]
    client.flush()
    problems = []
    requests = {n for m in sent for n, _, _ in sdk.recorder.for_message(m["messageId"])}
    if not 2 <= len(requests) <= 20:
        problems.append(f"150 calls went in {len(requests)} requests")
    for m in sent:
        if not wait_until(lambda: upstream.delivered(m["messageId"]), 10) or len(upstream.delivered(m["messageId"])) != 1:
            problems.append(f"track {m['messageId']} arrived {len(upstream.delivered(m['messageId']))} times")
            break
    results.record(f"sdk {sdk.name}: 150 calls batched by the SDK arrive once each", problems, time.monotonic() - started)

    # A call the relay refuses (400): the SDK is told at once and does not resend it.
    started = time.monotonic()
    errors = []
    client.on_error = None
    for consumer in client.consumers or []:
        consumer.on_error = lambda e, batch: errors.append((getattr(e, "status", None), str(e), batch))
    bad = client.identify(user, {"age": "old"})[1]
    client.flush()
    problems = []
    if not wait_until(lambda: errors, 5):
        problems.append("on_error was not called within 5 s")
    elif errors[0][0] != 400 or "traits.age" not in errors[0][1]:
        problems.append(f"on_error got {errors[0][:2]}, expected status 400 naming traits.age")
    tries = sdk.recorder.for_message(bad["messageId"])
    if len(tries) != 1:
        problems.append(f"the refused call was sent {len(tries)} times: {[s for _, _, s in tries]}")
    results.record(f"sdk {sdk.name}: a refused call (400) is reported once, not resent", problems, time.monotonic() - started)
    return client


def run_sdk_retries(sdks, clients, relay, upstream, results):
    """Every SDK's call meets a full spool (503 + Retry-After), is resent by
    the SDK, and arrives once when the relay has room again."""
    started = time.monotonic()
    upstream.answer(503)
    relay.fill(key="filler-key")
    sent, threads = {}, []
    for sdk, client in zip(sdks, clients):
        sent[sdk.name] = client.identify(f"{sdk.name}-retry", {"firstName": "Ada", "lastName": "Lovelace"})[1]
        t = threading.Thread(target=client.flush, daemon=True)
        t.start()
        threads.append(t)

    def refused(sdk):
        return any(s == 503 for _, _, s in sdk.recorder.for_message(sent[sdk.name]["messageId"]))

    wait_until(lambda: all(refused(s) for s in sdks), 20)
    upstream.answer(200)
    for t in threads:
        t.join(40)
    for sdk in sdks:
        problems = [] if refused(sdk) else ["the SDK never got a 503"]
        statuses = [s for _, _, s in sdk.recorder.for_message(sent[sdk.name]["messageId"])]
        if not statuses or statuses[-1] != 200:
            problems.append(f"answers {statuses}, expected 503s then 200")
        p, delivered = sdk_checks(sdk, upstream, sent[sdk.name], "identify")
        problems += p
        if delivered and delivered.get("traits") != {"first_name": "Ada", "last_name": "Lovelace", "name": "Ada Lovelace"}:
            problems.append(f"traits {delivered.get('traits')}")
        results.record(f"sdk {sdk.name}: a 503 is retried by the SDK and the call arrives once ({statuses})", problems,
                       time.monotonic() - started)


def make_sdks(relay_url):
    import logging
    logging.getLogger("segment").setLevel(logging.CRITICAL)  # the tests read on_error, not the SDKs' logs
    logging.getLogger("rudderstack").setLevel(logging.CRITICAL)
    import rudderstack.analytics as rudder
    import rudderstack.analytics.request as rudder_request
    import segment.analytics as segment
    import segment.analytics.request as segment_request

    seg_recorder, rud_recorder = Recorder(segment_request), Recorder(rudder_request)
    return [
        # Only the host (and, to test both, gzip) differ from each SDK's defaults.
        SDK("segment", lambda: segment.Client("segment-key", host=relay_url), seg_recorder, "segment-key", encoding=None),
        SDK("segment-gzip", lambda: segment.Client("segment-gzip-key", host=relay_url, gzip=True), seg_recorder,
            "segment-gzip-key", encoding="gzip"),
        SDK("rudderstack", lambda: rudder.Client("rudder-key", host=relay_url), rud_recorder, "rudder-key", encoding="gzip"),
    ]


# --- Main -------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--relay", default=str(ROOT / ".build/debug/plainflow-relay"))
    ap.add_argument("--only", nargs="*", help="example names to run (default: all)")
    ap.add_argument("--no-sdk", action="store_true", help="skip the SDK tests")
    args = ap.parse_args()

    results = Results()
    work = Path(tempfile.mkdtemp(prefix="relay-clients-"))
    upstream = Upstream()
    relays = []
    started = time.monotonic()
    try:
        chosen = [e for e in examples(work / "build") if not args.only or e.name in args.only]
        (work / "build").mkdir()
        for ex in chosen:
            prepare(ex)
        # Apps need no key where the relay has one: the examples send none.
        relay = Relay(args.relay, work / "relay", upstream, write_key="relay-key", max_bytes=48 * 1024)
        relays.append(relay)
        run_examples(relay, upstream, chosen, results, work)

        if not args.no_sdk:
            # No key in the relay: each SDK's own key is forwarded with its calls.
            sdk_relay = Relay(args.relay, work / "sdk-relay", upstream, write_key=None, max_bytes=256 * 1024)
            relays.append(sdk_relay)
            sdks = make_sdks(sdk_relay.url)
            clients = [run_sdk(sdk, upstream, results) for sdk in sdks]
            run_sdk_retries(sdks, clients, sdk_relay, upstream, results)
            for client in clients:
                client.shutdown()
    finally:
        for relay in relays:
            relay.stop()
        upstream.stop()
        if not results.failed:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"outputs and relay logs kept in {work}")
    log(f"client tests took {time.monotonic() - started:.0f} s")
    log(f"clients: {len(results.passed)} passed, {len(results.failed)} failed")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
