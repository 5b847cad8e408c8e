-- wrk script for the harness: POST /v1/identify with bench/payload.json, a
-- unique messageId per call (PREFIX-THREAD-N; the relay dedupes on it), and
-- a JSON summary line at the end (requests, errors, latency percentiles).
--   wrk ... -s bench/wrk-identify.lua URL -- PREFIX [PAYLOAD_FILE]
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

function init(args)
  prefix = (args[1] or "wrk") .. "-" .. tostring(tid)
  local f = assert(io.open(args[2] or "bench/payload.json", "rb"))
  template = f:read("*a"):gsub("%s+$", "")
  f:close()
  local a, b = template:find("@ID@", 1, true)
  local c, d = template:find("@ID@", b + 1, true)
  part1 = template:sub(1, a - 1)
  part2 = template:sub(b + 1, c - 1)
  part3 = template:sub(d + 1)
  n = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  n = n + 1
  local id = prefix .. "-" .. n
  return wrk.format(nil, "/v1/identify", nil, part1 .. id .. part2 .. id .. part3)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"rps":%.1f,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
