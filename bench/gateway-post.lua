-- wrk script for bench/gateway.sh: POST a chat request.
-- env: GW_API (chat|messages), GW_MODEL, GW_STREAM=1, GW_KEY, GW_HEADERS ("k: v; k2: v2")
local api = os.getenv("GW_API") or "chat"
local model = os.getenv("GW_MODEL") or "gpt-4o-mini"
local stream = os.getenv("GW_STREAM") == "1"
local key = os.getenv("GW_KEY") or ""

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
for k, v in string.gmatch(os.getenv("GW_HEADERS") or "", "([%w%-]+):%s*([^;]+)") do
  wrk.headers[k] = v
end

local msgs = '[{"role":"user","content":"Say hello to the benchmark in a few words."}]'
if api == "messages" then
  wrk.path = "/v1/messages"
  wrk.body = '{"model":"' .. model .. '","max_tokens":256,"messages":' .. msgs ..
    (stream and ',"stream":true' or '') .. '}'
else
  wrk.path = "/v1/chat/completions"
  wrk.body = '{"model":"' .. model .. '","messages":' .. msgs ..
    (stream and ',"stream":true,"stream_options":{"include_usage":true}' or '') .. '}'
end
