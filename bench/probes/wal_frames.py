"""Which B-trees a spool commit writes to the WAL, under wrk load (not part of the harness's report).

    PLAINFLOW_BENCH_BIN=/path/to/plainflow-relay python3 bench/probes/wal_frames.py [CLIENTS]

Copies the spool and its WAL 2.5 s into a 4 s wrk run, reads the WAL's frames (page number,
commit marker) and maps each page to its table or index with SQLite's dbstat, then prints the
frames a commit writes per B-tree over the last 200 commits. Needs Python's sqlite3 with dbstat.
"""
import os, sys, time, json, subprocess, struct, shutil, sqlite3, collections, threading
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness as h
import atexit
atexit.register(h.cleanup)  # the relay's, the sink's and our temp dirs (spools of up to a GB) go at exit
sink = h.Sink(); relay = h.Relay(sink.port)
out = h.mktemp("walprobe"); shutil.rmtree(out, ignore_errors=True); os.makedirs(out)
try:
    conns = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    t = threading.Thread(target=lambda: h.wrk(relay.port, conns, 4, h.uniq("w")))
    t.start(); time.sleep(2.5)
    shutil.copy(relay.spool + "-wal", out + "/spool.db-wal")
    shutil.copy(relay.spool, out + "/spool.db")
    t.join()
finally:
    relay.stop(); sink.stop()
wal = open(out + "/spool.db-wal", "rb").read()
magic, ver, psz, ckpt, salt1, salt2, c1, c2 = struct.unpack(">IIIIIIII", wal[:32])
frames = []
off = 32
while off + 24 + psz <= len(wal):
    pgno, commit, s1, s2, k1, k2 = struct.unpack(">IIIIII", wal[off:off+24])
    if (s1, s2) != (salt1, salt2): break
    frames.append((pgno, commit))
    off += 24 + psz
# page -> btree name from a copy of the db with its WAL (dbstat)
shutil.copy(out + "/spool.db-wal", out + "/copy.db-wal"); shutil.copy(out + "/spool.db", out + "/copy.db")
db = sqlite3.connect(out + "/copy.db")
names = {}
try:
    for name, pageno in db.execute("SELECT name, pageno FROM dbstat"):
        names[pageno] = name
except Exception as e:
    print("dbstat:", e)
commits = []; cur = []
for pgno, commit in frames:
    cur.append(pgno)
    if commit: commits.append(cur); cur = []
print("frames", len(frames), "commits", len(commits), "page size", psz)
agg = collections.Counter()
for c in commits[-200:]:
    for p in c: agg[names.get(p, "page1" if p == 1 else "free/other")] += 1
n = len(commits[-200:])
for k, v in agg.most_common(): print("%-28s %.2f frames/commit" % (k, v / n))
print("mean frames/commit %.1f" % (sum(len(c) for c in commits[-200:]) / n))
shutil.rmtree(out, ignore_errors=True)
