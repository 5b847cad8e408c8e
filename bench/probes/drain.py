"""The bad hour's end, for A/B comparisons of two builds (not part of the harness's report).

    PLAINFLOW_BENCH_BIN=/path/to/plainflow-relay python3 bench/probes/drain.py [CALLS]
    env: UUID=1 (random UUID message ids, as the SDKs send)

Fills the spool with CALLS line-protocol calls (default 500,000) while the upstream answers
503, waits until the oldest of them is 65 s old (a backlog that outlived an outage: each
message is delivered more than the prune's margin of 60 s after its receipt), then lets
the upstream answer 200 and sends SIGHUP (resume at once) and times the drain. Prints one
JSON line: the fill's and the drain's calls/s, the spool writer's CPU and the bytes the
relay wrote per drained message. Alternate two builds: this machine moves a lot between runs.
"""
import os, sys, time, json, signal
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness as h
import atexit
atexit.register(h.cleanup)  # the relay's, the sink's and our temp dirs (spools of up to a GB) go at exit
n = int(sys.argv[1]) if len(sys.argv) > 1 else 500000
uuid = os.environ.get("UUID") == "1"
def writer_cpu(pid):
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            if open("/proc/%d/task/%s/comm" % (pid, t)).read().strip() == "spool-writer":
                f = open("/proc/%d/task/%s/stat" % (pid, t)).read().rsplit(")", 1)[1].split()
                return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return 0.0
def wchar(pid):
    return int([l for l in open("/proc/%d/io" % pid) if l.startswith("wchar")][0].split()[1])
sink = h.Sink(status=503); relay = h.Relay(sink.port)
try:
    t0 = time.time()
    out = h.loadgen("line", "--unix", relay.sock, "--n", n, "--window", 1000, "--seconds", 400, "--prefix", h.uniq("d"), *(["--uuid"] if uuid else []))
    while time.time() - t0 < 65:
        time.sleep(1)
    queued, c0, w0 = relay.queued(), writer_cpu(relay.pid), wchar(relay.pid)
    sink.set_status(200)
    os.kill(relay.pid, signal.SIGHUP)
    t1 = time.time()
    while relay.queued() > 0 and time.time() - t1 < 300:
        time.sleep(0.2)
    took = time.time() - t1
    print(json.dumps({"ids": "uuid" if uuid else "ordered", "fill_rate": round(out["rate"]), "queued": queued,
                      "drain_rate": round(queued / took), "left": relay.queued(),
                      "writer_us_per_msg": round((writer_cpu(relay.pid) - c0) / max(queued, 1) * 1e6, 1),
                      "wchar_per_msg": round((wchar(relay.pid) - w0) / max(queued, 1))}))
finally:
    relay.stop(); sink.stop()
