-- scripts/wrk/events.lua — wrk script for scripts/wrk-matrix.sh: POST
-- /api/v1/events with BATCH CloudEvents per request (env BATCH, default 1:
-- a single event as application/cloudevents+json, as OpenMeter's SDKs send;
-- more: an application/cloudevents-batch+json array). Each event is ~250
-- bytes of JSON, like `bucketq bench`'s default. At the end it prints one
-- JSON line: requests, non-2xx responses, socket errors, latency in ms.
local batch = tonumber(os.getenv("BATCH") or "1")
local function event(i)
  return string.format('{"specversion":"1.0","type":"api-calls","id":"wrk-%08d","source":"wrk","subject":"customer-%d","time":"2026-12-05T12:00:00Z","data":{"method":"GET","route":"/hello","duration_ms":12,"tokens":1234,"model":"gpt-x","region":"eu-west-1"}}', i, i % 100)
end
wrk.method = "POST"
if batch == 1 then
  wrk.headers["Content-Type"] = "application/cloudevents+json"
  wrk.body = event(1)
else
  wrk.headers["Content-Type"] = "application/cloudevents-batch+json"
  local evs = {}
  for i = 1, batch do evs[i] = event(i) end
  wrk.body = "[" .. table.concat(evs, ",") .. "]"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_s":%.3f,"non_2xx":%d,"socket_errors":%d,"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"body_bytes":%d}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000, #wrk.body))
end
