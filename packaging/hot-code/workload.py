#!/usr/bin/env python3
"""Runs the relay through one tier of work and prints, as JSON, which pages
of its binary it has mapped (packaging/hot-code/profile.sh runs it, with the
disk's read-ahead off and a cold page cache, so that a page mapped is a page
touched).

  idle: start, answer /healthz, wait (what every relay runs)
  work: then identify over HTTP at 1 and 32 clients, /v1/batch, the line
        protocol on the Unix socket, an upstream that answers 503 then 200
        (retries), /metrics and /v1/status, the heap trim after the burst

usage: PLAINFLOW_BENCH_BIN=BINARY workload.py idle|work   (the bench drivers built)
"""
import json
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import harness as h  # noqa: E402  (the benchmark harness's sink, relay and load drivers)

import atexit  # noqa: E402
import signal  # noqa: E402
atexit.register(h.cleanup)
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, h.on_signal)  # the relay, the sink and their temp dirs go on a signal too

tier = sys.argv[1] if len(sys.argv) > 1 else "idle"
if tier not in ("idle", "work"):
    sys.exit("usage: workload.py idle|work")
binary = os.path.realpath(h.BIN)


def mapped_pages(pid):
    """File offsets of the binary's pages present in the process's page tables, by mapping permissions."""
    out = {}
    with open("/proc/%d/pagemap" % pid, "rb") as pagemap:
        for line in open("/proc/%d/maps" % pid):
            f = line.split()
            if len(f) < 6 or os.path.realpath(f[5]) != binary:
                continue
            start, end = (int(x, 16) for x in f[0].split("-"))
            offset = int(f[2], 16)
            pages = out.setdefault(f[1], [])
            for va in range(start, end, 4096):
                pagemap.seek(va // 4096 * 8)
                if struct.unpack("<Q", pagemap.read(8))[0] >> 63:
                    pages.append(offset + va - start)
    return out


sink = h.Sink()
relay = h.Relay(sink.port)
try:
    time.sleep(1.5)
    if tier == "work":
        for path in ("/healthz", "/metrics", "/v1/status"):
            h.http_get(relay.port, path)
        sent = 0
        for conns in (1, 32):
            w = h.wrk(relay.port, conns, 1, h.uniq("hot%d" % conns))
            sent += w["requests"] - w["err_status"]
        h.loadgen("batch", "--tcp", relay.port, "--n", 3000, "--size", 100, "--conns", 4, "--seconds", 30, "--prefix", h.uniq("hotb"))
        h.loadgen("line", "--unix", relay.sock, "--n", 3000, "--window", 1000, "--seconds", 30, "--prefix", h.uniq("hotl"))
        h.wait_delivered(sink, sent + 6000, 60)
        sink.set_status(503)  # the next 1,000 are refused, retried, then delivered
        h.loadgen("batch", "--tcp", relay.port, "--n", 1000, "--size", 100, "--conns", 2, "--seconds", 30, "--prefix", h.uniq("hotr"))
        time.sleep(3)
        sink.set_status(200)
        delivered, complete = h.wait_delivered(sink, sent + 7000, 60)
        if not complete:
            sys.exit("workload: %d of %d calls delivered in 60 s" % (delivered["messages"], sent + 7000))
        for path in ("/healthz", "/metrics", "/v1/status"):
            h.http_get(relay.port, path)
        time.sleep(5)
    print(json.dumps({"tier": tier, "mem": h.proc_mem(relay.pid), "pages": mapped_pages(relay.pid)}))
finally:
    relay.stop()
    sink.stop()
