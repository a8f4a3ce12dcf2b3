-- wrk script for bench/http_bench.py: POST /v1/aggregate with the real
-- client's payload, cycling through bearer tokens so that every connection
-- interleaves customers.
--
--   LGR_BENCH_BODY    file holding the request body
--   LGR_BENCH_TOKENS  file with one token per line
--
-- Requests are built once per token at start-up, so that the Lua work per
-- request is one table lookup.

local function read_all(path)
  local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
  local text = f:read("*a")
  f:close()
  return text
end

local body = read_all(os.getenv("LGR_BENCH_BODY"))
local requests = {}
for token in io.lines(os.getenv("LGR_BENCH_TOKENS")) do
  if token ~= "" then
    -- wrk.format() adds no Host header when given a header table, and the
    -- server answers an HTTP/1.1 request without one with 400.
    requests[#requests + 1] = wrk.format("POST", "/v1/aggregate", {
      ["Host"] = "127.0.0.1",
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json",
    }, body)
  end
end
assert(#requests > 0, "no tokens")

local next_index = 0
local threads_set_up = 0  -- counted in wrk's main Lua state

function setup(thread)
  thread:set("lgr_thread", threads_set_up)  -- a global in the thread's state
  threads_set_up = threads_set_up + 1
end

function init(args)
  -- Threads start at different tokens.
  next_index = ((lgr_thread or 0) * 7919) % #requests
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
