-- Start-up figures of issue 12, each as a ratio to its reference measured in the same run, on the
-- machine as it is ("quiet") and with a CPU hog on every core ("hogged": this script starts one
-- busy child process per CPU and stops each by its own pid at the end).
--   spawn+join, sequential and in batches of 200: Thread.new vs raw pthread_create+pthread_join
--     (goal <= 2.0x), Thread.spawn(f, 42) returning 42 (goal <= 3.0x);
--   callback create+free, back to back and after a pause, vs a bare luaL_newstate+lua_close
--     (goal <= 0.7x).
package.path = "./lua/?.lua;" .. package.path
local ffi = require "ffi"
local Thread = require "lj-async.thread"
local CallbackFactory = require "lj-async.callback"
local report = require "bench.report"

ffi.cdef [[
double ljt_pthread_spawn_join_ns(int n);
double ljt_pthread_batch_ns(int batch, int rounds);
int clock_gettime(int clk, void *ts);
int usleep(unsigned us);
typedef struct lua_State lua_State;
lua_State *luaL_newstate(void);
void lua_close(lua_State *L);
]]
local T = ffi.load(os.getenv("LJASYNC_TESTC") or "build/libljasync_testc.so")
local C = ffi.C

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 7
local BATCH = 200

local ts = ffi.new("int64_t[2]")
local function now() C.clock_gettime(1, ts); return tonumber(ts[0]) + tonumber(ts[1]) * 1e-9 end
local function median(xs) local c = {}; for i = 1, #xs do c[i] = xs[i] end; table.sort(c); return c[math.floor((#c + 1) / 2)] end

-- -- What is measured (microseconds per item) --

local empty = function() end
local identity = function(x) return x end

local function seq_new(n)
  local t0 = now()
  for _ = 1, n do local t = Thread.new(empty); t:join(); t:destroy() end
  return (now() - t0) / n * 1e6
end
-- Diagnostic (no goal): a function that takes `ud` gets its cdata, so a state made on the spot
-- opens ffi for it; `empty` declares no parameter and is called without it.
local takes_ud = function(ud) end
local function seq_new_ud(n)
  local t0 = now()
  for _ = 1, n do local t = Thread.new(takes_ud); t:join(); t:destroy() end
  return (now() - t0) / n * 1e6
end
local function seq_spawn(n)
  local t0 = now()
  for _ = 1, n do
    local t = Thread.spawn(identity, 42)
    local ok, v = t:join()
    assert(ok and v == 42)
    t:destroy()
  end
  return (now() - t0) / n * 1e6
end
local function batch_of(start)
  return function(rounds)
    local hs = {}
    local t0 = now()
    for _ = 1, rounds do
      for i = 1, BATCH do hs[i] = start() end
      for i = 1, BATCH do
        local ok, v = hs[i]:join()
        assert(ok and (hs[i]._spawned == false or v == 42))
        hs[i]:destroy()
      end
    end
    return (now() - t0) / (rounds * BATCH) * 1e6
  end
end
local batch_new = batch_of(function() return Thread.new(empty) end)
local batch_spawn = batch_of(function() return Thread.spawn(identity, 42) end)

local I = CallbackFactory("int(*)(int)")
local code = string.dump(identity)
local function cb_back_to_back(n)
  local t0 = now()
  for _ = 1, n do I(code):free() end
  return (now() - t0) / n * 1e6
end
local function cb_after_pause(n)
  local sum = 0
  for _ = 1, n do
    C.usleep(20000)
    local t0 = now()
    I(code):free()
    sum = sum + (now() - t0)
  end
  return sum / n * 1e6
end
local function bare_state(n)
  local t0 = now()
  for _ = 1, n do C.lua_close(C.luaL_newstate()) end
  return (now() - t0) / n * 1e6
end
local function bare_after_pause(n)
  local sum = 0
  for _ = 1, n do
    C.usleep(20000)
    local t0 = now()
    C.lua_close(C.luaL_newstate())
    sum = sum + (now() - t0)
  end
  return sum / n * 1e6
end

-- -- CPU hogs: one busy child process per CPU, each stopped by its pid --

local function start_hogs(n)
  local pids = {}
  for i = 1, n do
    local p = io.popen("sh -c 'exec luajit -e \"while true do end\" </dev/null >/dev/null 2>&1 & echo $!'")
    pids[i] = assert(tonumber(p:read("*l")), "cannot start a CPU hog")
    p:close()
  end
  return pids
end
local function stop_hogs(pids)
  for _, pid in ipairs(pids) do os.execute("kill " .. pid .. " 2>/dev/null") end
end

-- -- One pass: every row, interleaved with its reference round by round --

local rows = {
  { "Thread.new + join, sequential", 2.0, seq_new, 200, "pthread create+join, sequential", function(n) return T.ljt_pthread_spawn_join_ns(n) / 1e3 end, 200 },
  { "Thread.new + join, batches of 200", 2.0, batch_new, 1, "pthread, batches of 200", function(r) return T.ljt_pthread_batch_ns(BATCH, r) / 1e3 end, 1 },
  { "Thread.spawn(f, 42) + join -> 42, sequential", 3.0, seq_spawn, 200, "pthread create+join, sequential", function(n) return T.ljt_pthread_spawn_join_ns(n) / 1e3 end, 200 },
  { "Thread.spawn(f, 42) + join -> 42, batches of 200", 3.0, batch_spawn, 1, "pthread, batches of 200", function(r) return T.ljt_pthread_batch_ns(BATCH, r) / 1e3 end, 1 },
  { "callback create+free, back to back", 0.7, cb_back_to_back, 200, "luaL_newstate+lua_close", bare_state, 200 },
  { "callback create+free, after a 20 ms pause", 0.7, cb_after_pause, 10, "luaL_newstate+lua_close after a pause", bare_after_pause, 10 },
}

local function pass(label)
  local results = {}
  for i, row in ipairs(rows) do
    local name, goal, f, n, refname, ref, rn = unpack(row)
    f(math.max(1, math.floor(n / 4))); ref(math.max(1, math.floor(rn / 4)))  -- warm
    local xs, rs = {}, {}
    for k = 1, ROUNDS do xs[k] = f(n); rs[k] = ref(rn) end
    results[i] = { median(xs), median(rs) }
  end
  local ud_xs, ud_rs = {}, {}
  for k = 1, ROUNDS do ud_xs[k] = seq_new_ud(200); ud_rs[k] = T.ljt_pthread_spawn_join_ns(200) / 1e3 end
  print(("start-up, %s (median of %d rounds; %d cpus)"):format(label, ROUNDS, Thread.cpus()))
  print(("  %-48s %5s %9s %9s %7s   %s"):format("what", "goal", "us", "ref us", "ratio", "reference"))
  for i, row in ipairs(rows) do
    local us, ref = results[i][1], results[i][2]
    local ratio = us / ref
    report.row{ section = "start-up, " .. label:match("^%a+"), what = row[1], goal = ("<= %.1fx"):format(row[2]),
      figure = us, unit = "us", reference = ("%s, %.1f us"):format(row[5], ref), ratio = ratio, met = ratio <= row[2],
      line = ("  %-48s %4.1fx %9.1f %9.1f %6.2fx%s   %s"):format(row[1], row[2], us, ref, ratio,
        ratio <= row[2] and " " or "!", row[5]) }
  end
  print(("  (diagnostic, no goal: Thread.new(function(ud) end) + join, sequential: %.1f us, %.2fx pthread's %.1f us)"):format(
    median(ud_xs), median(ud_xs) / median(ud_rs), median(ud_rs)))
end

pass("quiet")
local hogs = start_hogs(Thread.cpus())
local ok, err = pcall(pass, ("hogged: %d busy processes"):format(#hogs))
stop_hogs(hogs)
if not ok then error(err, 0) end
print("  ('!': over its goal)")
