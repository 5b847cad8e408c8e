-- wrk script: POST /v1/identify with the seed's typical payload, a distinct
-- user id per request (each call gets its own generated message_id).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/identify", nil,
    '{"userId":"bench-' .. n .. '","traits":{"name":"Mark Twain","email":"","plan":"premium","logins":5}}')
end
