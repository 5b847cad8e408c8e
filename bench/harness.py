#!/usr/bin/env python3
"""The benchmark harness's measurements (run through bench/harness.sh, which
installs the packages and builds the binaries first).

Each figure is measured against its reference in the same run, RUNS times
(3 in full mode, 1 with --quick). Results go to bench/results/*.json; then
bench/report.py writes BENCHMARKS.md and bench/benchmarks.png.

Only 127.0.0.1 and Unix sockets are used. Every process started here is
stopped by its PID (atexit and on SIGINT/SIGTERM); temp dirs are removed.
A measurement that fails is recorded with its error; the others go on.
"""
import argparse
import atexit
import datetime
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
# What the .deb ships (make release); PLAINFLOW_BENCH_BIN measures another build (A/B by hand).
BIN = os.environ.get("PLAINFLOW_BENCH_BIN") or os.path.join(ROOT, ".build-deb", "plainflow-relay")
DRV = os.path.join(ROOT, ".build-release", "bench-drivers")
LOADGEN = os.path.join(DRV, "loadgen")
SINK = os.path.join(DRV, "sink")
SQLITE_BENCH = os.path.join(DRV, "sqlite_bench")
NIO_CEILING = os.path.join(BENCH, "nio-ceiling", ".build", "release", "NIOCeiling")
PAYLOAD = os.path.join(BENCH, "payload.json")
WRK_LUA = os.path.join(BENCH, "wrk-identify.lua")
PGBIN = "/usr/lib/postgresql/15/bin"
TICK = os.sysconf("SC_CLK_TCK")

procs = []      # (name, Popen or pid, stop function or None)
tempdirs = []
RUN_ID = "%x" % int(time.time() * 1000)
_seq = [0]


def log(*a):
    print("[%s]" % time.strftime("%H:%M:%S"), *a, flush=True)


def uniq(tag):
    _seq[0] += 1
    return "%s-%s-%d" % (tag, RUN_ID, _seq[0])


# ---------------------------------------------------------------- processes

def cleanup():
    for name, p, stop in reversed(procs):
        try:
            if stop:
                stop()
            pid = p.pid if hasattr(p, "pid") else p
            if hasattr(p, "poll") and p.poll() is not None:
                continue
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if hasattr(p, "poll"):
                    if p.poll() is not None:
                        break
                else:
                    try:
                        os.kill(pid, 0)
                    except OSError:
                        break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
                if hasattr(p, "wait"):
                    p.wait(timeout=5)
        except Exception:
            pass
    procs.clear()
    for d in tempdirs:
        shutil.rmtree(d, ignore_errors=True)
    tempdirs.clear()


def on_signal(sig, frame):
    cleanup()
    sys.exit(128 + sig)


def stop(p):
    """Stops one process we started (by PID) and forgets it."""
    for i, (name, q, stopf) in enumerate(procs):
        if q is p:
            procs.pop(i)
            try:
                if stopf:
                    stopf()
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(timeout=5)
            except Exception:
                pass
            return


def spawn(name, argv, logfile, **kw):
    out = open(logfile, "ab")
    env = kw.pop("env", None)
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAINFLOW_RELAY_")}
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, **kw)
    procs.append((name, p, None))
    return p


def mktemp(prefix, owner=None):
    # /var/tmp: on the root disk (the same disk for every spool and database).
    d = tempfile.mkdtemp(prefix="plainflow-bench-%s." % prefix, dir="/var/tmp")
    tempdirs.append(d)
    if owner:
        shutil.chown(d, owner, owner)
    return d


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listening on 127.0.0.1:%d after %ds" % (port, timeout))


def http_get(port, path, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_mem(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024.0  # MiB
    # RssAnon: the relay's private memory (heap, stacks, SQLite's cache); RssFile: pages of the
    # binary and shared libraries mapped from the page cache (shared, clean, reclaimable).
    return {"rss_mib": round(out.get("VmRSS", 0), 1), "hwm_mib": round(out.get("VmHWM", 0), 1),
            "anon_mib": round(out.get("RssAnon", 0), 1), "file_mib": round(out.get("RssFile", 0), 1)}


def run_json(argv, timeout, cwd=ROOT):
    """Runs a driver that prints one JSON line; returns it as a dict."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("{"):
            d = json.loads(line)
            if "error" in d:
                raise RuntimeError("%s: %s %s" % (os.path.basename(argv[0]), d["error"], r.stderr.strip()[-300:]))
            return d
    raise RuntimeError("%s printed no result (rc %s): %s" % (argv[0], r.returncode, (r.stderr or r.stdout).strip()[-500:]))


def loadgen(mode, *args, timeout=600):
    return run_json([LOADGEN, mode, "--payload", PAYLOAD] + [str(a) for a in args], timeout)


def wrk(port, conns, seconds, prefix, path_note=""):
    threads = 1 if conns < 2 else 2
    argv = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--timeout", "5s", "--latency",
            "-s", WRK_LUA, "http://127.0.0.1:%d" % port, "--", prefix, PAYLOAD]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, cwd=ROOT)
    for line in r.stdout.splitlines():
        if line.startswith("WRKJSON "):
            d = json.loads(line[8:])
            d["errors"] = d["err_connect"] + d["err_read"] + d["err_write"] + d["err_status"] + d["err_timeout"]
            # calls answered 2xx per second
            d["ok_rps"] = (d["requests"] - d["err_status"]) / (d["duration_us"] / 1e6)
            return d
    raise RuntimeError("wrk printed no summary: %s %s" % (r.stdout[-300:], r.stderr[-300:]))


# ---------------------------------------------------------------- services

class Sink:
    def __init__(self, status=200):
        self.port = free_port()
        self.dir = mktemp("sink")
        self.p = spawn("sink", [SINK, str(self.port), str(status)], os.path.join(self.dir, "sink.log"))
        wait_port(self.port)

    def stats(self):
        return json.loads(http_get(self.port, "/stats")[1])

    def set_status(self, code):
        http_get(self.port, "/status?code=%d" % code)

    def reset(self):
        http_get(self.port, "/reset")

    def stop(self):
        stop(self.p)


def unit_environment():
    """The Environment= lines of the packaged systemd unit: the relay is measured as it runs there."""
    unit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "packaging", "debian", "plainflow-relay.service")
    env = {}
    for line in open(unit):
        if line.startswith("Environment="):
            k, _, v = line.strip()[len("Environment="):].partition("=")
            env[k] = v
    return env


class Relay:
    def __init__(self, upstream_port):
        self.dir = mktemp("relay")
        self.port = free_port()
        self.sock = os.path.join(self.dir, "relay.sock")
        self.spool = os.path.join(self.dir, "spool.db")
        conf = os.path.join(self.dir, "relay.toml")
        open(conf, "w").write("# empty: every setting keeps its default\n")
        self.argv = [BIN, "run", "--config", conf, "--tcp", "127.0.0.1:%d" % self.port, "--unix", self.sock,
                     "--spool", self.spool, "--upstream", "http://127.0.0.1:%d" % upstream_port,
                     "--write-key", "bench", "--log-level", "warning"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PLAINFLOW_RELAY_")}
        env.update(unit_environment())
        self.p = spawn("relay", self.argv, os.path.join(self.dir, "relay.log"), env=env)
        end = time.time() + 30
        while True:
            if self.p.poll() is not None:
                raise RuntimeError("relay exited (%s): %s" % (self.p.returncode, open(os.path.join(self.dir, "relay.log")).read()[-800:]))
            try:
                if http_get(self.port, "/healthz", timeout=1)[0] == 200 and os.path.exists(self.sock):
                    break
            except OSError:
                pass
            if time.time() > end:
                raise RuntimeError("relay did not become healthy in 30 s")
            time.sleep(0.05)
        self.pid = self.p.pid

    def cpu(self):
        return proc_cpu(self.pid)

    def mem(self):
        return proc_mem(self.pid)

    def metrics(self):
        text = http_get(self.port, "/metrics")[1].decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                parts = line.split()
                if len(parts) >= 2:
                    name = parts[0].split("{")[0]
                    try:
                        out[name] = out.get(name, 0) + float(parts[1])
                    except ValueError:
                        pass
        return out

    def queued(self):
        return int(self.metrics().get("plainflow_spool_messages", 0))

    def stop(self):
        stop(self.p)


class Postgres:
    def __init__(self):
        self.dir = mktemp("pg", owner="postgres")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.su("%s/initdb -D %s -A trust -U postgres --no-sync >%s/initdb.log 2>&1" % (PGBIN, self.data, self.dir))
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on -c max_connections=100" % (self.port, self.dir)
        self.su("%s/pg_ctl -D %s -o %s -l %s/server.log -w -t 60 start" % (PGBIN, self.data, shlex.quote(opts), self.dir))
        pid = int(open(os.path.join(self.data, "postmaster.pid")).readline())
        procs.append(("postgres", pid, self._stop))
        tpl = open(PAYLOAD).read().strip()
        self.psql("CREATE TABLE events (seq bigserial PRIMARY KEY, message_id text NOT NULL UNIQUE,"
                  " received_at timestamptz NOT NULL DEFAULT now(), payload jsonb NOT NULL);"
                  " CREATE SEQUENCE ids; CREATE TABLE tpl (body text NOT NULL);"
                  " INSERT INTO tpl VALUES ($tpl$%s$tpl$);" % tpl)
        self.script = os.path.join(self.dir, "insert.sql")
        # One INSERT per transaction; the id (and the payload's messageId) from a sequence, so
        # every transaction inserts a new unique row. The payload comes from a one-row table
        # because pgbench would read its ':5' and '10:00' as variables.
        open(self.script, "w").write(
            "INSERT INTO events (message_id, payload) SELECT s.id, replace(t.body, '@ID@', s.id)::jsonb"
            " FROM tpl t, (SELECT 'pg-' || nextval('ids') AS id) s;\n")
        shutil.chown(self.script, "postgres", "postgres")
        self.version = subprocess.run(["%s/postgres" % PGBIN, "--version"], capture_output=True, text=True).stdout.strip()

    def su(self, cmd, timeout=120):
        r = subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("as postgres: %s: %s" % (cmd[:120], (r.stderr or r.stdout)[-500:]))
        return r.stdout

    def psql(self, sql):
        return self.su("psql -X -q -h %s -p %d -U postgres -d postgres -v ON_ERROR_STOP=1 -c %s" % (self.dir, self.port, shlex.quote(sql)))

    def pgbench(self, clients, seconds, tag):
        prefix = os.path.join(self.dir, "log_" + tag)
        jobs = 1 if clients == 1 else 2
        out = self.su("cd %s && pgbench -h %s -p %d -U postgres -n -M prepared -c %d -j %d -T %d -l --log-prefix=%s -f %s postgres 2>&1"
                      % (self.dir, self.dir, self.port, clients, jobs, seconds, prefix, self.script), timeout=seconds + 120)
        m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
        failed = re.search(r"number of failed transactions: (\d+)", out)
        if not m:
            raise RuntimeError("pgbench: no tps in output: " + out[-500:])
        lats = []
        for fn in os.listdir(self.dir):
            if fn.startswith("log_" + tag + "."):
                with open(os.path.join(self.dir, fn)) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 3 and parts[2].isdigit():
                            lats.append(int(parts[2]) / 1000.0)
                os.unlink(os.path.join(self.dir, fn))
        lats.sort()
        pct = lambda q: round(lats[int(q * (len(lats) - 1))], 3) if lats else None
        return {"tps": float(m.group(1)), "failed": int(failed.group(1)) if failed else 0, "transactions": len(lats),
                "p50_ms": pct(0.5), "p99_ms": pct(0.99), "clients": clients}

    def _stop(self):
        subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", "%s/pg_ctl -D %s -m fast -w stop" % (PGBIN, self.data)],
                       capture_output=True, timeout=60)

    def stop(self):
        for i, (name, p, stopf) in enumerate(procs):
            if stopf == self._stop:
                procs.pop(i)
                break
        self._stop()


class Nginx:
    def __init__(self):
        self.dir = mktemp("nginx")
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        open(conf, "w").write("""
daemon off;
master_process on;
worker_processes auto;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %(d)s/body;
  proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fastcgi;
  uwsgi_temp_path %(d)s/uwsgi;
  scgi_temp_path %(d)s/scgi;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:%(port)d;
    location / { return 204; }
  }
}
""" % {"d": d, "port": self.port})
        self.p = spawn("nginx", ["nginx", "-c", conf, "-p", d], os.path.join(d, "nginx.out"))
        wait_port(self.port)

    def stop(self):
        stop(self.p)


class NIOCeilingServer:
    def __init__(self):
        if not os.path.exists(NIO_CEILING):
            raise RuntimeError("bench/nio-ceiling was not built (see the harness log)")
        self.dir = mktemp("nio")
        self.port = free_port()
        self.p = spawn("nio-ceiling", [NIO_CEILING, str(self.port)], os.path.join(self.dir, "nio.log"))
        wait_port(self.port)

    def stop(self):
        stop(self.p)


class SyslogNG:
    def __init__(self, sink_port):
        self.dir = mktemp("syslogng")
        self.port = free_port()
        d = self.dir
        conf = os.path.join(d, "syslog-ng.conf")
        open(conf, "w").write("""@version: 3.38
options { stats-freq(0); };
source s_net { network(ip("127.0.0.1") port(%(port)d) transport("tcp") flags(no-parse) log-iw-size(20000)); };
destination d_http {
  http(url("http://127.0.0.1:%(sink)d/v1/batch") method("POST")
       headers("Content-Type: application/json")
       batch-lines(1000) batch-bytes(1048576) batch-timeout(200) workers(2)
       body-prefix('{"batch":[') delimiter(",") body-suffix("]}") body("${MESSAGE}")
       disk-buffer(reliable(yes) dir("%(d)s") disk-buf-size(536870912) mem-buf-size(16777216)));
};
log { source(s_net); destination(d_http); flags(flow-control); };
""" % {"port": self.port, "sink": sink_port, "d": d})
        self.p = spawn("syslog-ng", ["syslog-ng", "-F", "-f", conf, "--persist-file", os.path.join(d, "persist"),
                                     "--pidfile", os.path.join(d, "pid"), "--control", os.path.join(d, "ctl")],
                       os.path.join(d, "syslog-ng.log"))
        try:
            wait_port(self.port, 20)
        except RuntimeError:
            raise RuntimeError("syslog-ng did not listen: " + open(os.path.join(d, "syslog-ng.log")).read()[-800:])
        self.pid = self.p.pid

    def stop(self):
        stop(self.p)


def wait_delivered(sink, target, timeout):
    end = time.time() + timeout
    last_n, last_change = -1, time.time()
    while time.time() < end:
        s = sink.stats()
        if s["messages"] >= target:
            return s, True
        if s["messages"] != last_n:
            last_n, last_change = s["messages"], time.time()
        time.sleep(0.05)
    return sink.stats(), False


# ---------------------------------------------------------------- measurements

def m1_identify(cfg, pg):
    """Durable single identify: relay (wrk c1, c32, fixed 1,000/s) vs PostgreSQL (pgbench c1, c32)."""
    res = {"runs": []}
    for r in range(cfg.runs):
        run = {}
        sink = Sink()
        relay = Relay(sink.port)
        try:
            run["relay_idle"] = relay.mem()
            for c in (1, 32):
                m0, cpu0 = relay.metrics(), relay.cpu()
                w = wrk(relay.port, c, cfg.wrk_seconds, uniq("m1c%d" % c))
                cpu1, m1 = relay.cpu(), relay.metrics()
                w["cpu_s"] = round(cpu1 - cpu0, 3)
                w["cpu_us_per_call"] = round((cpu1 - cpu0) / max(w["requests"], 1) * 1e6, 2)
                commits = m1.get("plainflow_spool_commits_total", 0) - m0.get("plainflow_spool_commits_total", 0)
                w["calls_per_commit"] = round(w["requests"] / commits, 2) if commits else None
                run["relay_c%d" % c] = w
                log("  run %d relay c%d: %.0f calls/s p50 %.2f ms p99 %.2f ms errors %d, %.1f us CPU/call" %
                    (r + 1, c, w["ok_rps"], w["p50_ms"], w["p99_ms"], w["errors"], w["cpu_us_per_call"]))
            fr = loadgen("rate", "--tcp", relay.port, "--rate", 1000, "--seconds", cfg.rate_seconds, "--conns", 8,
                         "--prefix", uniq("m1rate"))
            run["relay_rate1000"] = fr
            log("  run %d relay at 1,000/s: p50 %.2f ms p99 %.2f ms (%d ok, %d bad)" % (r + 1, fr["p50_ms"], fr["p99_ms"], fr["ok"], fr["bad"]))
            run["relay_mem"] = relay.mem()
        finally:
            relay.stop()
            sink.stop()
        if pg is None:
            run["pg_error"] = "PostgreSQL did not start (see errors)"
        else:
            for c in (1, 32):
                try:
                    run["pg_c%d" % c] = pg.pgbench(c, cfg.wrk_seconds, "r%dc%d" % (r, c))
                    log("  run %d postgres c%d: %.0f tps p50 %.2f ms p99 %.2f ms" % (r + 1, c, run["pg_c%d" % c]["tps"],
                        run["pg_c%d" % c]["p50_ms"] or 0, run["pg_c%d" % c]["p99_ms"] or 0))
                except Exception as e:
                    run["pg_c%d_error" % c] = str(e)
                    log("  postgres c%d failed: %s" % (c, e))
        res["runs"].append(run)
    return res


def m2_ceilings(cfg):
    """nginx return 204 and a bare SwiftNIO server, wrk at 32 connections, same payload."""
    res = {"runs": []}
    for r in range(cfg.runs):
        run = {}
        for name, cls in (("nginx", Nginx), ("nio", NIOCeilingServer)):
            try:
                s = cls()
                try:
                    run[name] = wrk(s.port, 32, cfg.wrk_seconds, uniq("m2" + name))
                    run[name]["mem"] = proc_mem(s.p.pid)
                    log("  run %d %s c32: %.0f req/s p50 %.2f ms p99 %.2f ms" % (r + 1, name, run[name]["ok_rps"], run[name]["p50_ms"], run[name]["p99_ms"]))
                finally:
                    s.stop()
            except Exception as e:
                run[name + "_error"] = str(e)
                log("  %s failed: %s" % (name, e))
        res["runs"].append(run)
    return res


def m3_sqlite(cfg):
    """SQLite alone (WAL, FULL, outbox shape) vs relay /v1/batch of 100 and the pipelined line protocol."""
    res = {"runs": []}
    for r in range(cfg.runs):
        run = {}
        d = mktemp("sqlite")
        try:
            run["sqlite_1"] = run_json([SQLITE_BENCH, os.path.join(d, "one.db"), "1", "100000", str(cfg.sqlite1_seconds), PAYLOAD], 120)
            run["sqlite_1000"] = run_json([SQLITE_BENCH, os.path.join(d, "thousand.db"), "1000", str(cfg.sqlite_rows), str(cfg.sqlite1000_seconds), PAYLOAD], 180)
            # The same with random UUID ids, as SDKs send: each lands on a page of its own in the id index.
            run["sqlite_1000_uuid"] = run_json([SQLITE_BENCH, os.path.join(d, "uuid.db"), "1000", str(cfg.calls), str(cfg.sqlite1000_seconds), PAYLOAD, "uuid"], 180)
            log("  run %d sqlite: %.0f rows/s at 1/txn, %.0f rows/s at 1,000/txn, %.0f with random ids" % (
                r + 1, run["sqlite_1"]["rows_per_s"], run["sqlite_1000"]["rows_per_s"], run["sqlite_1000_uuid"]["rows_per_s"]))
        except Exception as e:
            run["sqlite_error"] = str(e)
            log("  sqlite failed: %s" % e)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        # A fresh relay (and sink) for each kind: the batch run leaves a backlog that would
        # otherwise still be draining while the line protocol is measured.
        for kind in ("batch", "line", "line_uuid"):
            sink = Sink()
            relay = Relay(sink.port)
            try:
                cpu0, m0 = relay.cpu(), relay.metrics()
                if kind == "batch":
                    out = loadgen("batch", "--tcp", relay.port, "--n", cfg.calls, "--size", 100, "--conns", 4,
                                  "--seconds", 120, "--prefix", uniq("m3b"))
                    calls = out["acked"]
                else:
                    out = loadgen("line", "--unix", relay.sock, "--n", cfg.calls, "--window", 1000,
                                  "--seconds", 120, "--prefix", uniq("m3l"), *(["--uuid"] if kind == "line_uuid" else []))
                    calls = out["ok"]
                cpu1, m1 = relay.cpu(), relay.metrics()
                out["cpu_us_per_call"] = round((cpu1 - cpu0) / max(calls, 1) * 1e6, 2)
                commits = m1.get("plainflow_spool_commits_total", 0) - m0.get("plainflow_spool_commits_total", 0)
                out["calls_per_commit"] = round(calls / commits, 1) if commits else None
                out["mem"] = relay.mem()
                time.sleep(3)  # quiet: what the relay keeps after a burst
                out["mem_after_3s"] = relay.mem()
                run["relay_" + kind] = out
                log("  run %d relay %s: %.0f calls/s acked (%d calls, %.1f us CPU/call)" % (r + 1, kind, out["rate"], calls, out["cpu_us_per_call"]))
            except Exception as e:
                run["relay_%s_error" % kind] = str(e)
                log("  relay %s failed: %s" % (kind, e))
            finally:
                relay.stop()
                sink.stop()
        res["runs"].append(run)
    return res


def m4_end_to_end(cfg):
    """CALLS over the line protocol to the relay (defaults) and over TCP to syslog-ng, delivered to the sink."""
    res = {"runs": [], "calls": cfg.e2e_calls}
    for r in range(cfg.runs):
        run = {}
        sink = Sink()
        try:
            relay = Relay(sink.port)
            try:
                cpu0 = relay.cpu()
                out = loadgen("line", "--unix", relay.sock, "--n", cfg.e2e_calls, "--window", 1000, "--seconds", 300,
                              "--prefix", uniq("m4"))
                s, complete = wait_delivered(sink, cfg.e2e_calls, cfg.e2e_timeout)
                cpu1 = relay.cpu()
                el = (s["last"] - out["start_epoch"]) if s["last"] else None
                run["relay"] = {"send": out, "delivered": s["messages"], "requests": s["requests"], "complete": complete,
                                "elapsed_s": round(el, 3) if el else None,
                                "rate": round(s["messages"] / el, 1) if el else 0,
                                "cpu_us_per_call": round((cpu1 - cpu0) / max(s["messages"], 1) * 1e6, 2),
                                "mem": relay.mem()}
                log("  run %d relay e2e: %d delivered in %.1f s = %.0f calls/s (complete %s), peak RSS %.0f MiB" %
                    (r + 1, s["messages"], el or 0, run["relay"]["rate"], complete, run["relay"]["mem"]["hwm_mib"]))
            finally:
                relay.stop()
        except Exception as e:
            run["relay_error"] = str(e)
            log("  relay e2e failed: %s" % e)
        try:
            sink.reset()
            sl = SyslogNG(sink.port)
            try:
                cpu0 = proc_cpu(sl.pid)
                out = loadgen("line", "--tcp", sl.port, "--n", cfg.e2e_calls, "--noreply", "--seconds", 300,
                              "--prefix", uniq("m4s"))
                s, complete = wait_delivered(sink, cfg.e2e_calls, cfg.e2e_timeout)
                cpu1 = proc_cpu(sl.pid)
                el = (s["last"] - out["start_epoch"]) if s["last"] else None
                run["syslog_ng"] = {"send": out, "delivered": s["messages"], "requests": s["requests"], "complete": complete,
                                    "elapsed_s": round(el, 3) if el else None,
                                    "rate": round(s["messages"] / el, 1) if el else 0,
                                    "cpu_us_per_call": round((cpu1 - cpu0) / max(s["messages"], 1) * 1e6, 2),
                                    "mem": proc_mem(sl.pid)}
                log("  run %d syslog-ng e2e: %d delivered in %.1f s = %.0f calls/s (complete %s), peak RSS %.0f MiB" %
                    (r + 1, s["messages"], el or 0, run["syslog_ng"]["rate"], complete, run["syslog_ng"]["mem"]["hwm_mib"]))
            finally:
                sl.stop()
        except Exception as e:
            run["syslog_ng_error"] = str(e)
            log("  syslog-ng e2e failed: %s" % e)
        sink.stop()
        res["runs"].append(run)
    return res


def scrape_trio(relay, seconds):
    """/metrics and /v1/status scraped in a tight closed loop, identify at 200/s meanwhile (all bounded)."""
    argv = lambda *a: [LOADGEN] + list(a) + ["--payload", PAYLOAD, "--tcp", str(relay.port), "--seconds", str(seconds)]
    ps = {"metrics": subprocess.Popen(argv("get", "--path", "/metrics", "--n", "1000000"), stdout=subprocess.PIPE, text=True),
          "status": subprocess.Popen(argv("get", "--path", "/v1/status", "--n", "1000000"), stdout=subprocess.PIPE, text=True),
          "identify": subprocess.Popen(argv("rate", "--rate", "200", "--conns", "4", "--prefix", uniq("m6")), stdout=subprocess.PIPE, text=True)}
    outs = {}
    for k, p in ps.items():
        o, _ = p.communicate(timeout=seconds + 60)
        outs[k] = json.loads(o.strip().splitlines()[-1])
    return outs


def m5_backlog(cfg):
    """Fill a backlog with the upstream down (503), scrape under it (6), then drain it (5). RSS at 10k and at N (8)."""
    res = {"runs": [], "backlog": cfg.backlog}
    for r in range(cfg.runs):
        run = {}
        sink = Sink(status=503)
        relay = Relay(sink.port)
        try:
            time.sleep(1)
            run["idle_mem"] = relay.mem()
            # The same three clients with an empty spool: the baseline for 6.
            try:
                run["no_backlog"] = scrape_trio(relay, cfg.baseline_seconds)
                b = run["no_backlog"]
                log("  run %d empty spool: identify p99 %.2f ms; /metrics p99 %.2f ms; /v1/status p99 %.2f ms" %
                    (r + 1, b["identify"]["p99_ms"], b["metrics"]["p99_ms"], b["status"]["p99_ms"]))
            except Exception as e:
                run["no_backlog_error"] = str(e)
            t0 = time.time()
            f1 = loadgen("batch", "--tcp", relay.port, "--n", 10000, "--size", 100, "--conns", 4, "--seconds", 120,
                         "--prefix", uniq("m5a"))
            run["queued_10k"] = relay.queued()
            run["mem_10k"] = relay.mem()
            f2 = loadgen("batch", "--tcp", relay.port, "--n", cfg.backlog - 10000, "--size", 100, "--conns", 4,
                         "--seconds", cfg.fill_timeout, "--prefix", uniq("m5b"))
            run["fill"] = {"acked": f1["acked"] + f2["acked"], "seconds": round(time.time() - t0, 2),
                           "rate": round((f1["acked"] + f2["acked"]) / (time.time() - t0), 1), "bad_batches": f1["bad_batches"] + f2["bad_batches"]}
            run["queued_full"] = relay.queued()
            run["mem_full"] = relay.mem()
            log("  run %d backlog: %d queued in %.1f s (%.0f/s); RSS %.0f MiB idle, %.0f MiB at %d, %.0f MiB at %d" %
                (r + 1, run["queued_full"], run["fill"]["seconds"], run["fill"]["rate"], run["idle_mem"]["rss_mib"],
                 run["mem_10k"]["rss_mib"], run["queued_10k"], run["mem_full"]["rss_mib"], run["queued_full"]))
            # 6: two scrapers in a tight bounded loop, identify calls at a moderate rate,
            # a few seconds after the fill ended (the backlog is there, the burst is over).
            time.sleep(cfg.settle_seconds)
            try:
                outs = scrape_trio(relay, cfg.scrape_seconds)
                run["under_backlog"] = outs
                log("  run %d under backlog: identify p99 %.2f ms (%d ok); /metrics p50 %.2f p99 %.2f ms (%d); /v1/status p50 %.2f p99 %.2f ms (%d)" %
                    (r + 1, outs["identify"]["p99_ms"], outs["identify"]["ok"], outs["metrics"]["p50_ms"], outs["metrics"]["p99_ms"],
                     outs["metrics"]["n"], outs["status"]["p50_ms"], outs["status"]["p99_ms"], outs["status"]["n"]))
            except Exception as e:
                run["under_backlog_error"] = str(e)
                log("  scrape under backlog failed: %s" % e)
            # 5: the upstream comes back; drain with the defaults.
            run["drain"] = drain_now(relay, sink, cfg.drain_timeout)
            run["relay_mem"] = relay.mem()
            d = run["drain"]
            log("  run %d drain: %d of %d delivered in %.1f s = %.0f calls/s (%.0f per request; complete %s)" %
                (r + 1, d["delivered"], d["target"], d["elapsed_s"] or 0, d["rate"], d["messages_per_request"] or 0, d["complete"]))
        except Exception as e:
            run["error"] = str(e)
            log("  backlog run failed: %s" % e)
        finally:
            relay.stop()
            sink.stop()
        try:
            run["drain_uuid"] = drain_random_ids(cfg)
            d = run["drain_uuid"]
            log("  run %d drain, random ids: %d of %d delivered in %.1f s = %.0f calls/s (filled at %.0f/s)" %
                (r + 1, d["delivered"], d["target"], d["elapsed_s"] or 0, d["rate"], d["fill_rate"]))
        except Exception as e:
            run["drain_uuid_error"] = str(e)
            log("  random-id drain failed: %s" % e)
        res["runs"].append(run)
    return res


def drain_random_ids(cfg):
    """5 with the SDKs' random message ids: a backlog filled over the line protocol while the
    upstream answers 503, delivered once its oldest call is 65 s old (a backlog that outlived an
    outage: every message is delivered more than the spool's 60 s prune margin after receipt)."""
    sink = Sink(status=503)
    relay = Relay(sink.port)
    try:
        t0 = time.time()
        f = loadgen("line", "--unix", relay.sock, "--n", cfg.uuid_backlog, "--window", 1000, "--seconds", cfg.fill_timeout,
                    "--prefix", uniq("m5u"), "--uuid")
        while time.time() - t0 < 65:
            time.sleep(0.5)
        return dict(drain_now(relay, sink, cfg.drain_timeout), fill_rate=round(f["rate"], 1))
    finally:
        relay.stop()
        sink.stop()


def drain_now(relay, sink, timeout):
    """The upstream (the sink) answers 200 from now on: the relay's backlog drained with its defaults."""
    target = relay.queued()
    sink.reset()
    cpu0 = relay.cpu()
    t_up = time.time()
    sink.set_status(200)
    s, complete = wait_delivered(sink, target, timeout)
    cpu1 = relay.cpu()
    el = s["last"] - t_up if s["last"] else None
    el_first = s["last"] - s["first"] if s["last"] else None
    return {"target": target, "delivered": s["messages"], "requests": s["requests"], "complete": complete,
            "elapsed_s": round(el, 3) if el else None, "rate": round(s["messages"] / el, 1) if el else 0,
            "first_delivery_after_s": round(s["first"] - t_up, 3) if s["first"] else None,
            "rate_from_first_delivery": round(s["messages"] / el_first, 1) if el_first else 0,
            "messages_per_request": round(s["messages"] / s["requests"], 1) if s["requests"] else None,
            "cpu_us_per_call": round((cpu1 - cpu0) / max(s["messages"], 1) * 1e6, 2)}


def m7_app_side(cfg):
    """segment-analytics-python analytics.identify() (in-process queue) vs a blocking POST /v1/identify to the relay."""
    res = {"runs": []}
    script = os.path.join(BENCH, "app_side.py")
    for r in range(cfg.runs):
        run = {}
        sink = Sink()
        relay = Relay(sink.port)
        try:
            cpu0 = relay.cpu()
            o = run_json([sys.executable, script, "--sink", str(sink.port), "--relay", str(relay.port),
                          "--segment-calls", str(cfg.segment_calls), "--relay-calls", str(cfg.app_relay_calls),
                          "--prefix", uniq("m7"), "--payload", PAYLOAD], 300)
            run.update(o)
            run["relay_cpu_us_per_call"] = round((relay.cpu() - cpu0) / max(cfg.app_relay_calls, 1) * 1e6, 2)
            run["relay_mem"] = relay.mem()
            sg, rl = o.get("segment", {}), o.get("relay", {})
            log("  run %d app side: segment identify() %.1f us/call (p99 %.1f us); relay POST %.1f us/call (p99 %.1f us)" %
                (r + 1, sg.get("mean_us", 0), sg.get("p99_us", 0), rl.get("mean_us", 0), rl.get("p99_us", 0)))
        except Exception as e:
            run["error"] = str(e)
            log("  app side failed: %s" % e)
        finally:
            relay.stop()
            sink.stop()
        res["runs"].append(run)
    return res


# ---------------------------------------------------------------- main

def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    disk = subprocess.run(["df", "-h", "--output=source,fstype,size", "/var/tmp"], capture_output=True, text=True).stdout.splitlines()[-1].split()
    rot = "?"
    try:
        dev = os.path.basename(disk[0])
        rot = {"0": "sysfs: non-rotational", "1": "sysfs: rotational"}.get(open("/sys/block/%s/queue/rotational" % dev).read().strip(), "?")
    except Exception:
        pass
    mem = int(open("/proc/meminfo").readline().split()[1]) // 1024
    return {"cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "memory_mib": mem,
            "disk": "%s (%s, %s, %s) for /var/tmp" % (disk[0], disk[1], disk[2], rot),
            "os": open("/etc/debian_version").read().strip() if os.path.exists("/etc/debian_version") else "?"}


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def tool_versions():
    v = {}
    for name, argv in (("wrk", ["wrk", "-v"]), ("nginx", ["nginx", "-v"]), ("syslog-ng", ["syslog-ng", "--version"]),
                       ("pgbench", ["pgbench", "--version"]), ("swift", ["swift", "--version"])):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            v[name] = ((r.stdout or "") + (r.stderr or "")).strip().splitlines()[0]
        except Exception as e:
            v[name] = "unavailable: %s" % e
    try:
        v["relay"] = subprocess.run([BIN, "version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception as e:
        v["relay"] = "?"
    try:
        if os.environ.get("PLAINFLOW_BENCH_BUILT_FROM"):  # recorded by harness.sh when it built the relay
            v["relay_commit"] = os.environ["PLAINFLOW_BENCH_BUILT_FROM"]
            return v
        v["relay_commit"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "Sources", "Package.swift"], capture_output=True, text=True).stdout.strip()
        if dirty:
            v["relay_commit"] += " (Sources modified)"
    except Exception:
        pass
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="comma list of m1..m7 (testing)")
    ap.add_argument("--command", default="bench/harness.sh")
    args = ap.parse_args()

    class Cfg:
        pass
    cfg = Cfg()
    q = args.quick
    cfg.mode = "quick" if q else "full"
    cfg.runs = 1 if q else 3
    cfg.wrk_seconds = 5 if q else 10
    cfg.rate_seconds = 5 if q else 10
    cfg.sqlite1_seconds = 3 if q else 5
    cfg.sqlite1000_seconds = 5 if q else 8
    cfg.sqlite_rows = 600000
    cfg.calls = 100000 if q else 200000
    cfg.e2e_calls = 200000
    cfg.e2e_timeout = 90 if q else 120
    cfg.backlog = 200000 if q else 1000000
    cfg.uuid_backlog = 100000 if q else 200000
    cfg.fill_timeout = 100 if q else 150
    cfg.settle_seconds = 3
    cfg.baseline_seconds = 3
    cfg.scrape_seconds = 5 if q else 8
    cfg.drain_timeout = 40 if q else 60
    cfg.segment_calls = 20000 if q else 50000
    cfg.app_relay_calls = 2000 if q else 5000

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    atexit.register(cleanup)

    only = set(x for x in args.only.split(",") if x)
    want = lambda k: not only or k in only
    started = datetime.datetime.now(datetime.timezone.utc)
    out = {"mode": cfg.mode, "runs": cfg.runs, "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
           "command": args.command + (" --quick" if q else ""), "machine": machine(), "versions": tool_versions(),
           "loadavg_start": loadavg(), "config": {k: v for k, v in vars(cfg).items()}, "payload_bytes": len(open(PAYLOAD).read().strip()),
           "errors": {}, "results": {}}
    out["uptime_start"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    log("mode %s, %d run(s) each; machine: %s; load %s" % (cfg.mode, cfg.runs, out["machine"]["cpu"], " ".join(loadavg())))

    pg = None
    if want("m1"):
        try:
            pg = Postgres()
            out["versions"]["postgres"] = pg.version
        except Exception as e:
            out["errors"]["postgres"] = str(e)
            log("PostgreSQL failed to start: %s" % e)
    steps = [("m1", "1 durable identify vs PostgreSQL", lambda: m1_identify(cfg, pg)),
             ("m2", "2 ceilings (nginx, SwiftNIO)", lambda: m2_ceilings(cfg)),
             ("m3", "3 SQLite vs /v1/batch and line protocol", lambda: m3_sqlite(cfg)),
             ("m4", "4 end to end vs syslog-ng", lambda: m4_end_to_end(cfg)),
             ("m5", "5/6/8 backlog: scrape, drain (also of random ids), memory", lambda: m5_backlog(cfg)),
             ("m7", "7 app side", lambda: m7_app_side(cfg))]
    for key, title, fn in steps:
        if not want(key):
            continue
        log("== %s" % title)
        t0 = time.time()
        try:
            out["results"][key] = fn()
        except Exception as e:
            out["errors"][key] = "%s\n%s" % (e, traceback.format_exc()[-1500:])
            log("%s failed: %s" % (key, e))
        log("   (%s took %.0f s)" % (key, time.time() - t0))
        if key == "m1" and pg is not None:
            pg.stop()
    out["loadavg_end"] = loadavg()
    out["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out["seconds"] = round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1)
    os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
    path = os.path.join(BENCH, "results", "%s-%s.json" % (cfg.mode, started.strftime("%Y%m%dT%H%M%SZ")))
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    log("results: %s (%.0f s in all)" % (os.path.relpath(path, ROOT), out["seconds"]))
    print(path)


if __name__ == "__main__":
    main()
