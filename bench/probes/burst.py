"""One burst through a relay, for A/B comparisons of two builds (not part of the harness's report).

    PLAINFLOW_BENCH_BIN=/path/to/plainflow-relay python3 bench/probes/burst.py line|batch [CALLS]
    env: WINDOW (line: calls unanswered, default 1000), UUID=1 (random UUID message ids)

Prints one JSON line: calls/s, the relay's CPU per call by thread (/proc/PID/task/*/stat),
the system's idle share during the burst (/proc/stat), bytes written and read per call
(/proc/PID/io), calls per spool commit and the relay's peak RSS. Alternate two builds
several times: this machine moves a lot between runs.
"""
import os, sys, time, json
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness as h
import atexit
atexit.register(h.cleanup)  # the relay's, the sink's and our temp dirs (spools of up to a GB) go at exit
kind = sys.argv[1] if len(sys.argv) > 1 else "line"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
def threads(pid):
    out = {}
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            name = open("/proc/%d/task/%s/comm" % (pid, t)).read().strip()
            f = open("/proc/%d/task/%s/stat" % (pid, t)).read().rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0) + (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return out
def io(pid):
    d = {}
    for l in open("/proc/%d/io" % pid):
        k, v = l.split(":"); d[k] = int(v)
    return d
sink = h.Sink(); relay = h.Relay(sink.port)
try:
    def st():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
        return sum(f), f[3] + f[4]
    s0 = st()
    t0, io0, m0 = threads(relay.pid), io(relay.pid), relay.metrics()
    if kind == "line":
        out = h.loadgen("line", "--unix", relay.sock, "--n", n, "--window", int(os.environ.get("WINDOW", 1000)), "--seconds", 120, "--prefix", h.uniq("p"), *(["--uuid"] if os.environ.get("UUID") else []))
        calls = out["ok"]
    else:
        out = h.loadgen("batch", "--tcp", relay.port, "--n", n, "--size", 100, "--conns", 4, "--seconds", 120, "--prefix", h.uniq("p"))
        calls = out["acked"]
    s1 = st()
    t1, io1, m1 = threads(relay.pid), io(relay.pid), relay.metrics()
    commits = m1.get("plainflow_spool_commits_total", 0) - m0.get("plainflow_spool_commits_total", 0)
    per = {k: round((t1.get(k, 0) - t0.get(k, 0)) / calls * 1e6, 2) for k in t1 if t1.get(k, 0) - t0.get(k, 0) > 0.01}
    print(json.dumps({"hwm_mib": round(int([l for l in open("/proc/%d/status" % relay.pid) if l.startswith("VmHWM")][0].split()[1]) / 1024, 1), "idle": round((s1[1]-s0[1])*100/(s1[0]-s0[0])), "rate": round(out["rate"]), "calls": calls, "cpu_us": round(sum(per.values()), 2), "threads": per,
                      "write_B_per_call": round((io1["write_bytes"] - io0["write_bytes"]) / calls),
                      "wchar_per_call": round((io1["wchar"] - io0["wchar"]) / calls),
                      "rchar_per_call": round((io1["rchar"] - io0["rchar"]) / calls),
                      "calls_per_commit": round(calls / commits, 1) if commits else None}))
finally:
    relay.stop(); sink.stop()
