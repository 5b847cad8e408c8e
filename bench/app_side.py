#!/usr/bin/env python3
"""What an identify costs the app, in-process (measurement 7).

1. segment-analytics-python: Client.identify() with its background queue,
   pointed at the local sink (so its consumer thread really uploads). Each
   call is timed on its own; then flush() (until the queue is empty) is timed.
2. A blocking POST /v1/identify to the relay with http.client on one
   keep-alive connection: each call returns after the relay's commit.

Both use bench/payload.json's fields and a unique message id per call.
Prints one JSON object.
"""
import argparse
import http.client
import json
import time


def pct(xs, q):
    return round(xs[int(q * (len(xs) - 1))], 2) if xs else None


def summary(lat_ns, wall_s):
    us = sorted(x / 1000.0 for x in lat_ns)
    return {"calls": len(us), "mean_us": round(sum(us) / len(us), 2), "p50_us": pct(us, 0.5), "p99_us": pct(us, 0.99),
            "max_us": round(us[-1], 2), "wall_s": round(wall_s, 3), "calls_per_s": round(len(us) / wall_s, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sink", type=int, required=True)
    ap.add_argument("--relay", type=int, required=True)
    ap.add_argument("--segment-calls", type=int, default=20000)
    ap.add_argument("--relay-calls", type=int, default=2000)
    ap.add_argument("--prefix", default="app")
    ap.add_argument("--payload", default="bench/payload.json")
    a = ap.parse_args()
    template = open(a.payload).read().strip()
    sample = json.loads(template)
    out = {}

    try:
        from segment.analytics.client import Client
        import segment.analytics.version as sv
        out["segment_version"] = sv.VERSION
        # The queue is sized to hold every call: a full queue would drop calls and make them look cheap.
        client = Client("bench", host="http://127.0.0.1:%d" % a.sink, max_queue_size=a.segment_calls + 1000, gzip=False)
        traits, context = sample["traits"], sample["context"]
        lat = []
        t0 = time.perf_counter()
        for i in range(a.segment_calls):
            s = time.perf_counter_ns()
            client.identify(user_id="user-%s-%d" % (a.prefix, i), traits=traits, context=context,
                            message_id="%s-seg-%d" % (a.prefix, i))
            lat.append(time.perf_counter_ns() - s)
        wall = time.perf_counter() - t0
        out["segment"] = summary(lat, wall)
        t1 = time.perf_counter()
        client.flush()
        out["segment"]["flush_s"] = round(time.perf_counter() - t1, 3)
        # What reached the sink (the consumer thread uploads batches of 100).
        c = http.client.HTTPConnection("127.0.0.1", a.sink, timeout=10)
        c.request("GET", "/stats")
        out["segment"]["delivered_to_sink"] = json.loads(c.getresponse().read())["messages"]
        c.close()
        client.shutdown() if hasattr(client, "shutdown") else client.join()
    except Exception as e:
        out["segment_error"] = "%s: %s" % (type(e).__name__, e)

    try:
        c = http.client.HTTPConnection("127.0.0.1", a.relay, timeout=10)
        lat, bad = [], 0
        hdrs = {"Content-Type": "application/json"}
        t0 = time.perf_counter()
        for i in range(a.relay_calls):
            mid = "%s-rel-%d" % (a.prefix, i)
            body = template.replace("@ID@", mid)
            s = time.perf_counter_ns()
            c.request("POST", "/v1/identify", body=body, headers=hdrs)
            r = c.getresponse()
            r.read()
            lat.append(time.perf_counter_ns() - s)
            if r.status != 200:
                bad += 1
        wall = time.perf_counter() - t0
        out["relay"] = summary(lat, wall)
        out["relay"]["non_200"] = bad
        c.close()
    except Exception as e:
        out["relay_error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
