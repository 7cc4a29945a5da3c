-- wrk script of bench/webhook_bench.py: signed Razorpay deliveries at a constant rate.
--
-- Run it with as many threads as connections (wrk -t N -c N): each thread then has one
-- connection, so a response belongs to the request sent just before it. Each thread sends its
-- share of WEBHOOK_RATE requests/s on a fixed schedule (thread k: slots k/rate + j*N/rate) and
-- measures every latency from the request's scheduled time, not from when it could be sent:
-- a stalled server makes the requests queued behind it late, and that lateness is counted
-- (the coordinated-omission correction of wrk2, which Debian does not package).
--
-- Environment: WEBHOOK_BODIES  file of "index \t event id \t signature \t body" lines
--              WEBHOOK_RATE    requests/s over all threads
--              WEBHOOK_THREADS the -t (and -c) given to wrk
--              WEBHOOK_OUT     where done() writes "index status duplicate latency_us done_us"
--                              lines (done_us: monotonic clock), and "sent n" for each thread
-- Each body is sent once (thread k takes lines k, k+N, ...); a thread that has sent all of
-- its bodies waits for wrk's -d to end.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

-- main state: hand each thread its number, collect the results at the end
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local out = assert(io.open(os.getenv("WEBHOOK_OUT"), "w"))
  for _, thread in ipairs(threads) do
    local rows = thread:get("rows")
    for i = 1, #rows do
      out:write(rows[i], "\n")
    end
    out:write("sent ", thread:get("sent"), "\n")
  end
  out:close()
end

-- thread states
rows = {}
local requests = {}
local indexes = {}
sent = 0 -- read by done()
local start_us = nil
local interval_us = nil
local offset_us = nil
local slot_us = nil -- scheduled time of the request being sent or awaited

function init(args)
  local nthreads = tonumber(os.getenv("WEBHOOK_THREADS"))
  local rate = tonumber(os.getenv("WEBHOOK_RATE"))
  interval_us = 1000000 * nthreads / rate
  offset_us = 1000000 * tid / rate
  local n = 0
  for line in io.lines(os.getenv("WEBHOOK_BODIES")) do
    if n % nthreads == tid then
      local index, event_id, signature, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
      local headers = {
        ["Content-Type"] = "application/json",
        ["X-Razorpay-Signature"] = signature,
        ["X-Razorpay-Event-Id"] = event_id,
      }
      table.insert(indexes, index)
      table.insert(requests, wrk.format("POST", nil, headers, body))
    end
    n = n + 1
  end
end

local function next_slot()
  if start_us == nil then
    start_us = now_us()
  end
  return start_us + offset_us + sent * interval_us
end

function delay()
  if sent >= #requests then
    return 3600000 -- all sent: idle until wrk stops
  end
  slot_us = next_slot()
  local wait_ms = (slot_us - now_us()) / 1000
  return wait_ms > 0 and math.floor(wait_ms) or 0
end

function request()
  if start_us == nil then -- wrk's check of the script (before any delay()): send nothing real
    return wrk.format("GET", "/health")
  end
  if sent >= #requests then -- reached only after a reconnect; never send a body twice
    return wrk.format("GET", "/health")
  end
  if slot_us == nil then -- a reconnect skips delay(); the request missed has no answer
    slot_us = next_slot()
  end
  sent = sent + 1
  return requests[sent]
end

function response(status, headers, body)
  if slot_us == nil or sent == 0 then
    return
  end
  local duplicate = body:find('"duplicate":true', 1, true) and 1 or 0
  local done_us = now_us()
  local latency = math.floor(done_us - slot_us)
  table.insert(rows, string.format("%s %d %d %d %d", indexes[sent], status, duplicate, latency,
                                   math.floor(done_us)))
  slot_us = nil
end
