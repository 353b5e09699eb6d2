-- wrk script of scripts/load: a mix of synthesis requests (api2 GET and POST /, api_v2 /tts, OpenAI
-- /v1/audio/speech), counted by status class, each thread stopping after its share of GSV_LOAD_REQUESTS answers.
-- After a 429 the thread's next request waits GSV_LOAD_BACKOFF_MS (a client honouring the server's Retry-After: 1).
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

-- per-thread globals (done() reads them with thread:get)
quota, backoff, pending_backoff, seen = 0, 0, 0, 0
c2xx, c429, c4xx, c5xx, cother = 0, 0, 0, 0, 0
local reqs = {}
local nreq, next_req = 0, 0

function init(args)
  local total = tonumber(os.getenv("GSV_LOAD_REQUESTS") or "2000")
  local nthreads = tonumber(os.getenv("GSV_LOAD_THREADS") or "1")
  quota = math.floor(total / nthreads)
  if id == 1 then quota = total - quota * (nthreads - 1) end
  backoff = tonumber(os.getenv("GSV_LOAD_BACKOFF_MS") or "200")
  local key = os.getenv("GSV_LOAD_KEY")
  local h = { ["Content-Type"] = "application/json" }
  if key and key ~= "" then h["Authorization"] = "Bearer " .. key end
  local texts = { "你好，世界。", "今天天气很好。", "我们去公园散步吧。", "明天见。" }
  for i, t in ipairs(texts) do
    table.insert(reqs, wrk.format("POST", "/", h, '{"text":"' .. t .. '","text_language":"zh","seed":' .. i .. '}'))
    table.insert(reqs, wrk.format("POST", "/tts", h, '{"text":"' .. t .. '","text_lang":"zh","ref_audio_path":"onnx/demo/ref.wav","prompt_text":"今天天气很好，我们去公园散步。","prompt_lang":"zh","seed":' .. i .. '}'))
  end
  table.insert(reqs, wrk.format("GET", "/?text=%E4%BD%A0%E5%A5%BD%EF%BC%8C%E4%B8%96%E7%95%8C%E3%80%82&text_language=zh&seed=9", h))
  table.insert(reqs, wrk.format("POST", "/v1/audio/speech", h, '{"model":"tts-1","input":"你好，世界。","voice":"default","response_format":"wav","seed":3}'))
  nreq = #reqs
  next_req = id % nreq
end

function request()
  next_req = next_req % nreq + 1
  return reqs[next_req]
end

function delay()
  if pending_backoff > 0 then
    pending_backoff = pending_backoff - 1
    return backoff
  end
  return 0
end

function response(status, headers, body)
  seen = seen + 1
  if status >= 200 and status < 300 then c2xx = c2xx + 1
  elseif status == 429 then c429 = c429 + 1; pending_backoff = pending_backoff + 1
  elseif status >= 400 and status < 500 then c4xx = c4xx + 1
  elseif status >= 500 then c5xx = c5xx + 1
  else cother = cother + 1 end
  if seen == quota then
    -- tell scripts/load this thread is done (wrk itself waits for the whole -d duration)
    local dir = os.getenv("GSV_LOAD_DONE_DIR")
    if dir then local f = io.open(dir .. "/" .. id, "w"); if f then f:close() end end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local t = { c2xx = 0, c429 = 0, c4xx = 0, c5xx = 0, cother = 0, seen = 0 }
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (tonumber(th:get(k)) or 0) end
  end
  local e = summary.errors
  io.write(string.format("LOAD answered=%d 2xx=%d 429=%d 4xx=%d 5xx=%d other=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d seconds=%.1f p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f\n",
    t.seen, t.c2xx, t.c429, t.c4xx, t.c5xx, t.cother, e.connect, e.read, e.write, e.timeout, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3))
end
