-- wrk script: POST a small chat completion to mock-upstream.
-- MOCK_BENCH_STREAM=1 asks for an SSE stream (with a usage chunk) instead.
-- MOCK_BENCH_PATH overrides the path (default /v1/chat/completions).
-- MOCK_BENCH_HEADERS adds headers, e.g. "x-mock-output-tokens: 64; x-mock-token-delay-ms: 5".
local stream = os.getenv("MOCK_BENCH_STREAM") == "1"
wrk.method = "POST"
wrk.path = os.getenv("MOCK_BENCH_PATH") or "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-lab-key"
if stream then
  wrk.body = '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},'
    .. '"messages":[{"role":"system","content":"You are a helpful assistant."},'
    .. '{"role":"user","content":"Write one short sentence about benchmarks."}]}'
else
  wrk.body = '{"model":"gpt-4o-mini","max_tokens":64,'
    .. '"messages":[{"role":"system","content":"You are a helpful assistant."},'
    .. '{"role":"user","content":"Write one short sentence about benchmarks."}]}'
end

for pair in string.gmatch(os.getenv("MOCK_BENCH_HEADERS") or "", "[^;]+") do
  local name, value = string.match(pair, "^%s*([^:]-)%s*:%s*(.-)%s*$")
  if name and name ~= "" then
    wrk.headers[name] = value
  end
end
