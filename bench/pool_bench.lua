-- Pool benchmarks, each against its reference measured in the same run (medians of several rounds):
--   20,000 tiny jobs (`return x * 2`) with every result collected, on 2 workers:
--     lj-async.pool vs luv's uv.new_work (libuv's thread pool, also 2 threads)
--   a CPU-bound job mix on 2 workers vs the same mix on 1 worker
local ffi = require "ffi"

-- libuv sizes its thread pool once, from the environment, when the first work is queued.
ffi.cdef [[ int setenv(const char *name, const char *value, int overwrite); ]]
ffi.C.setenv("UV_THREADPOOL_SIZE", "2", 1)

local async = require "lj-async.pool"
local ok_uv, uv = pcall(require, "luv")

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } ljb_pool_timespec;
int clock_gettime(int clk, ljb_pool_timespec *ts);
]]
local ts = ffi.new("ljb_pool_timespec")
local function now()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 9
local function median(t)
  local c = {}
  for i = 1, #t do c[i] = t[i] end
  table.sort(c)
  local n = #c
  return n % 2 == 1 and c[(n + 1) / 2] or (c[n / 2] + c[n / 2 + 1]) / 2
end

print(("lj-async pool benchmarks (%d rounds, medians; %d CPUs)"):format(ROUNDS, async.cpu_count()))

-- -- Tiny jobs --

local N = 20000
local expected = N * (N + 1)  -- sum of 2x for x = 1..N

local function ours_tiny(double)
  local sum = 0
  local function collect(r) sum = sum + r end
  local t = now()
  for i = 1, N do double(collect, i) end
  assert(async.wait_all(60), "lj-async: results did not arrive")
  local dt = now() - t
  assert(sum == expected, "lj-async: wrong results")
  return N / dt
end

-- luv: the work callback runs in libuv's thread pool (a state per thread), the after-work
-- callback in the loop; uv.run() returns when every job's callback has run.
local function luv_tiny(work)
  local t = now()
  for i = 1, N do work:queue(i) end
  uv.run()
  return N / (now() - t)
end

do
  async.ensure.exactly(2)
  local double = async.define("double", function(x) return x * 2 end)
  local luv_sum, luv_work = 0, nil
  if ok_uv then
    luv_work = uv.new_work(function(x) return x * 2 end, function(r) luv_sum = luv_sum + r end)
  end
  -- Warm up both (JIT, worker states, libuv's threads).
  ours_tiny(double); ours_tiny(double)
  if luv_work then luv_tiny(luv_work); luv_sum = 0 end

  local ours, theirs, ratio = {}, {}, {}
  for r = 1, ROUNDS do
    ours[r] = ours_tiny(double)
    if luv_work then
      luv_sum = 0
      theirs[r] = luv_tiny(luv_work)
      assert(luv_sum == expected, "luv: wrong results")
      ratio[r] = ours[r] / theirs[r]
    end
  end
  io.write(("tiny jobs, 2 workers, %d jobs, results collected:\n"):format(N))
  io.write(("  lj-async.pool  %.2f M jobs/s (median; min %.2f, max %.2f)   goal >= 1.5 M\n")
    :format(median(ours) / 1e6, math.min(unpack(ours)) / 1e6, math.max(unpack(ours)) / 1e6))
  if luv_work then
    io.write(("  luv new_work   %.2f M jobs/s (median)\n"):format(median(theirs) / 1e6))
    io.write(("  ratio          %.2fx luv (median of per-round ratios)\n"):format(median(ratio)))
  else
    io.write("  luv: not installed (apt-get install lua-luv), no reference\n")
  end
  async.undefine("double")
end

-- -- CPU-bound mix, 2 workers over 1 --

do
  local JOBS = 32
  -- A mix: arithmetic loop, string building, table sort; sizes vary per job.
  local work = async.define("mix", function(kind, n)
    if kind == 0 then
      local s = 0
      for i = 1, n * 40 do s = (s * 31 + i) % 1000003 end
      return s
    elseif kind == 1 then
      local parts = {}
      for i = 1, n do parts[#parts + 1] = tostring(i * 7) end
      return #table.concat(parts, ",")
    else
      local t = {}
      local x = n
      for i = 1, n do x = (x * 1103515245 + 12345) % 2147483648; t[i] = x end
      table.sort(t)
      return t[1]
    end
  end)
  local function run_mix(workers)
    async.ensure.exactly(workers)
    local done = 0
    local function collect() done = done + 1 end
    local t = now()
    for i = 1, JOBS do work(collect, i % 3, 20000 + (i * 7919) % 20000) end
    assert(async.wait_all(120), "mix: results did not arrive")
    assert(done == JOBS)
    return now() - t
  end
  run_mix(2); run_mix(1)  -- warm up both worker counts
  local one, two, ratio = {}, {}, {}
  for r = 1, ROUNDS do
    one[r] = run_mix(1)
    two[r] = run_mix(2)
    ratio[r] = one[r] / two[r]
  end
  io.write(("CPU-bound mix (%d jobs): 1 worker %.1f ms, 2 workers %.1f ms (medians)\n")
    :format(JOBS, median(one) * 1e3, median(two) * 1e3))
  io.write(("  speed-up 2 over 1 worker: %.2fx (median of per-round ratios)   goal >= 1.9x\n"):format(median(ratio)))
  async.undefine("mix")
end

async.shutdown()
