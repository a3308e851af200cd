-- What lj-async is for: a Lua function handed to C code that calls it from several threads at once.
local ffi = require "ffi"
local CallbackFactory = require "lj-async.callback"

ffi.cdef [[
double ljt_call_threads(int (*fp)(int), int nthreads, int calls, long long *sums);
]]
local testc = os.getenv("LJASYNC_TESTC") or "build/libljasync_testc.so"
local C = ffi.load(testc)

local THREADS, CALLS = 4, 250000

local function expected(t)
  local s = 0
  for i = t * CALLS, (t + 1) * CALLS - 1 do s = s + (i % 7) * 2 end
  return s
end

local function run(label, cb)
  local sums = ffi.new("long long[?]", THREADS)
  local ns = C.ljt_call_threads(cb:funcptr(), THREADS, CALLS, sums)
  local ok = true
  for t = 0, THREADS - 1 do ok = ok and tonumber(sums[t]) == expected(t) end
  print(("  %-34s %d threads x %d calls: results %s, %.0f ms, %.0f ns per call")
    :format(label, THREADS, CALLS, ok and "all correct" or "WRONG", ns / 1e6, ns / (THREADS * CALLS)))
end

print("lj-async demo: C code (spec/c/callers.c) calls one Lua function from " .. THREADS .. " threads at once.\n")

-- 1. What happens without lj-async: LuaJIT's own callback, entered by foreign threads.
print("1. LuaJIT's own ffi.cast callback, called from C threads (in a child process):")
local child = ([[luajit -e '
  local ffi = require "ffi"
  ffi.cdef "double ljt_call_threads(int (*fp)(int), int n, int calls, long long *sums);"
  local C = ffi.load(%q)
  local cb = ffi.cast("int(*)(int)", function(x) return (x %% 7) * 2 end)
  C.ljt_call_threads(cb, 4, 100000, ffi.new("long long[4]"))
  print("     (the child survived this time: the race is timing dependent)")' >/dev/null 2>&1]]):format(testc)
local ok, how, code = os.execute(child)
local status = type(ok) == "number" and ok or code
if status == 0 or ok == true then
  print("     the child survived this run (the race is timing dependent; it usually crashes)")
else
  local code = status >= 256 and math.floor(status / 256) or status
  local how_died = code > 128 and ("killed by signal " .. (code - 128)) or ("exit status " .. code)
  print(("     the child process died (%s): one lua_State was entered by several threads"):format(how_died))
end

-- 2. The same function through lj-async: its own state, entries serialized.
print("\n2. The same function as an lj-async callback:")
local f = function(x) return (x % 7) * 2 end
local serial = CallbackFactory("int(*)(int)")(f)
run("one state (calls serialized)", serial)
local parallel = CallbackFactory("int(*)(int)")(f, { states = THREADS })
run(("up to %d states (calls in parallel)"):format(THREADS), parallel)
print(("     the parallel callback now holds %d states"):format(parallel:states()))

-- 3. Errors on foreign threads reach someone instead of killing the process.
print("\n3. A Lua error raised on a C thread:")
local failing = CallbackFactory("int(*)(int)")(function(x)
  if x == 1234 then error("no good value for " .. x) end
  return (x % 7) * 2
end, { default = -1, on_error = "-- keep stderr quiet for the demo" })
local sums = ffi.new("long long[?]", THREADS)
C.ljt_call_threads(failing:funcptr(), THREADS, CALLS, sums)
local n, last = failing:errors()
print(("     %d error(s) caught; C received the default value -1; the last one:\n     %s")
  :format(n, (last or ""):gsub("\n", "\n     ")))

serial:free(); parallel:free(); failing:free()
print("\nDone: the process is still alive, every callback freed.")
