-- Benchmark of lj-async.thread: sequential spawn+join per thread, against raw pthread_create +
-- pthread_join in C and luv's uv.new_thread + join, all measured in this run. Wall-clock time
-- per thread, median of several interleaved rounds; ratios are over raw pthreads.
package.path = "./lua/?.lua;" .. package.path
local ffi = require "ffi"
local Thread = require "lj-async.thread"
local core = require "lj-async.core"

ffi.cdef [[
double ljt_pthread_spawn_join_ns(int n);
int clock_gettime(int clk, void *ts);
int setenv(const char *name, const char *value, int overwrite);
]]
-- The stock size is a test hook (ljasync.h's ljasync_test_hooks), handed out when asked for.
ffi.C.setenv("LJASYNC_TESTING", "1", 1)
local hooks = ffi.cast("const struct ljasync_test_hooks *", core.C.ljasync_test_hooks())
local T = ffi.load(os.getenv("LJASYNC_TESTC") or "build/libljasync_testc.so")
local has_luv, uv = pcall(require, "luv")

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 9
local N = tonumber(os.getenv("BENCH_THREADS")) or 300   -- threads per sustained round
local K = 32                                            -- threads per round from a ready stock

local ts = ffi.new("int64_t[2]")
local function now() ffi.C.clock_gettime(1, ts); return tonumber(ts[0]) + tonumber(ts[1]) * 1e-9 end
local function median(xs) table.sort(xs); return xs[math.floor((#xs + 1) / 2)] end

-- Microseconds per thread for n sequential runs of f.
local function per_thread(f, n)
  local t0 = now()
  for _ = 1, n do f() end
  return (now() - t0) / n * 1e6
end

local empty = function() end
local function lj_new() local t = Thread.new(empty); t:join(); t:destroy() end
local function lj_spawn0() local t = Thread.spawn(empty); t:join(); t:destroy() end
local identity = function(x) return x end
local function lj_spawn1() local t = Thread.spawn(identity, 42); t:join(); t:destroy() end
local step = 1
local with_upvalues = function(ud) return ffi.cast("int", step) end  -- ffi crosses as require
local function lj_new_up() local t = Thread.new(with_upvalues); t:join(); t:destroy() end
local function luv_thread() local t = uv.new_thread(empty); t:join() end
local function raw(n) return T.ljt_pthread_spawn_join_ns(n) / 1e3 end

local caller = {}  -- what Thread.new alone costs the creator
local function lj_new_timed()
  local t0 = now()
  local t = Thread.new(empty)
  caller[#caller + 1] = (now() - t0) * 1e6
  t:join(); t:destroy()
end

-- Warm up: traces, the module caches, the state stock.
raw(50); per_thread(lj_new, 50); per_thread(lj_spawn1, 20)
if has_luv then per_thread(luv_thread, 20) end

-- 1. Sustained: N threads back to back. The stock (4 states) runs dry at once, so this
--    measures making and closing a fresh state per thread as well.
local r = { raw = {}, new = {}, new_up = {}, spawn0 = {}, spawn1 = {}, luv = {} }
for k = 1, ROUNDS do
  r.raw[k] = raw(N)
  r.new[k] = per_thread(lj_new_timed, N)
  r.new_up[k] = per_thread(lj_new_up, math.floor(N / 3))
  r.spawn0[k] = per_thread(lj_spawn0, math.floor(N / 3))
  r.spawn1[k] = per_thread(lj_spawn1, math.floor(N / 3))
  if has_luv then r.luv[k] = per_thread(luv_thread, math.floor(N / 3)) end
end

-- 2. From a ready stock: rounds of K threads, each after a pause in which the (low-priority)
--    preparer fills a stock of K + 4 states; raw pthreads get the same pause before theirs.
hooks.env_set_stock(K + 4)
local s = { raw = {}, new = {} }
for k = 1, ROUNDS do
  Thread.sleep(0.1)
  s.raw[k] = raw(K)
  Thread.sleep(0.1)
  s.new[k] = per_thread(lj_new, K)
end
hooks.env_set_stock(4)

local base = median(r.raw)
local function line(name, us, ref)
  print(("%-52s %8.1f us   x%.2f"):format(name, us, us / (ref or base)))
end
print(("thread spawn+join, sequential; median of %d rounds; ratio over raw pthread_create+join (%d cpus)")
  :format(ROUNDS, Thread.cpus()))
line("raw pthread_create + pthread_join (C)", base)
line("lj-async Thread.new + join, sustained", median(r.new))
line("  of which Thread.new alone (creator's thread)", median(caller))
line("lj-async Thread.new(f with 2 upvalues) + join, sustained", median(r.new_up))
line("lj-async Thread.spawn() + join, sustained", median(r.spawn0))
line("lj-async Thread.spawn(42) + join -> 42, sustained", median(r.spawn1))
if has_luv then line("luv uv.new_thread + join, sustained", median(r.luv)) end
local sbase = median(s.raw)
line(("raw pthread, rounds of %d after a pause"):format(K), sbase, sbase)
line(("lj-async Thread.new + join, rounds of %d, stock ready"):format(K), median(s.new), sbase)
