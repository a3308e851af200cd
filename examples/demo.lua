-- What lj-async is for: a Lua function handed to C code that calls it from several threads at once.
-- The C code is libc's own: pthread_create starts the threads, qsort on each calls a Lua
-- comparator. Needs only lj-async (installed, or this tree's lua/ on LUA_PATH) and glibc.
local ffi = require "ffi"
local CallbackFactory = require "lj-async.callback"

-- Declared here and, through the `cdef` option, in the callbacks' own states.
local DECLS = [[
typedef unsigned long pthread_t;
struct demo_sort { int *data; int n; int (*compare)(const int *, const int *); };
int pthread_create(pthread_t *thread, const void *attr, void *(*start)(struct demo_sort *),
                   struct demo_sort *arg);
int pthread_join(pthread_t thread, void **result);
void qsort(void *base, size_t n, size_t size, int (*compare)(const int *, const int *));
int clock_gettime(int clock, long long ts[2]);
]]
ffi.cdef(DECLS)
local C = ffi.C

local THREADS, N = 4, 20000 -- each thread sorts N ints: about 270,000 comparisons

local ts = ffi.new("long long[2]")
local function now() C.clock_gettime(1, ts); return tonumber(ts[0]) + tonumber(ts[1]) * 1e-9 end

--- THREADS arrays of N pseudo-random ints (the same on every run).
local function arrays()
  local jobs, seed = {}, 12345
  for t = 1, THREADS do
    local data = ffi.new("int[?]", N)
    for i = 0, N - 1 do
      seed = (seed * 1103515245 + 12345) % 2147483648
      data[i] = seed % 1000000
    end
    jobs[t] = { data = data, job = ffi.new("struct demo_sort", { data, N }) }
  end
  return jobs
end

local function sorted(data)
  for i = 1, N - 1 do if data[i - 1] > data[i] then return false end end
  return true
end

-- The threads' start routine: an lj-async callback too (pthread_create calls it on each new
-- thread), with one state per thread so the threads run their qsort at once.
local start = CallbackFactory("void *(*)(struct demo_sort *)")(function(job)
  local ffi = require "ffi"
  ffi.C.qsort(job.data, job.n, 4, job.compare)
end, { cdef = DECLS, states = THREADS, name = "demo start" })

--- Sorts `jobs` (or new arrays) on THREADS pthreads with `compare`; returns seconds, the jobs.
local function sort_on_threads(compare, jobs)
  local jobs, tids = jobs or arrays(), ffi.new("pthread_t[?]", THREADS)
  local t0 = now()
  for t = 1, THREADS do
    jobs[t].job.compare = compare
    assert(C.pthread_create(tids + t - 1, nil, start:funcptr(), jobs[t].job) == 0, "pthread_create")
  end
  for t = 0, THREADS - 1 do C.pthread_join(tids[t], nil) end
  return now() - t0, jobs
end

-- The comparisons of one run, counted with LuaJIT's own callback on this thread (safe here).
local calls = 0
local counting = ffi.cast("int (*)(const int *, const int *)", function(a, b)
  calls = calls + 1
  return a[0] - b[0]
end)
for _, j in ipairs(arrays()) do C.qsort(j.data, N, 4, counting) end
counting:free()

local all_correct = true
local function run(label, cb)
  local seconds, jobs = sort_on_threads(cb:funcptr())
  local ok = true
  for _, j in ipairs(jobs) do ok = ok and sorted(j.data) end
  all_correct = all_correct and ok
  print(("  %-36s %d threads: %s, %.0f ms, %.0f ns per comparison")
    :format(label, THREADS, ok and "all sorted" or "WRONG", seconds * 1e3, seconds * 1e9 / calls))
end

print(("lj-async demo: libc's qsort, on %d pthreads at once, calls one Lua comparator (%d calls in all).\n")
  :format(THREADS, calls))

-- 1. What happens without lj-async: LuaJIT's own callbacks, entered by foreign threads.
print("1. LuaJIT's own ffi.cast callbacks, called by those threads (in a child process):")
local luajit = arg and arg[-1] or "luajit"
-- A child process (ulimit: no core file from the crash we expect), sorting as the threads below do.
-- A lua_State entered by several threads may also loop forever instead of crashing: the child
-- is stopped after CHILD_SECONDS (coreutils' timeout: exit 124).
local CHILD_SECONDS = 10
local child = ([[ulimit -c 0; exec timeout -k 1 %d %s -e '
  local ffi = require "ffi"
  ffi.cdef [=[%s]=]
  local compare = ffi.cast("int (*)(const int *, const int *)", function(a, b) return a[0] - b[0] end)
  local start = ffi.cast("void *(*)(struct demo_sort *)", function(job)
    ffi.C.qsort(job.data, job.n, 4, job.compare)
  end)
  local tids, jobs = ffi.new("pthread_t[4]"), {}
  for t = 0, 3 do
    local data = ffi.new("int[?]", 20000)
    for i = 0, 19999 do data[i] = (i * 7919) %% 20011 end
    jobs[t] = ffi.new("struct demo_sort", { data, 20000, compare })
    ffi.C.pthread_create(tids + t, nil, start, jobs[t])
  end
  for t = 0, 3 do ffi.C.pthread_join(tids[t], nil) end' >/dev/null 2>&1]]):format(CHILD_SECONDS, luajit, DECLS)
local ok, what, n = os.execute(child)
-- As an exit code, a killed child counting 128 + its signal (as a shell reports it). Lua 5.1's
-- os.execute gives system()'s wait status (a signal in its low 7 bits, else the code << 8); a
-- LuaJIT built with Lua 5.2 compatibility gives (ok, "exit" or "signal", number).
local code
if type(ok) == "number" then
  code = ok % 256 == 0 and math.floor(ok / 256) or 128 + ok % 128
else
  code = what == "signal" and 128 + n or n
end
if code == 0 then
  print("     the child survived this run (the race is timing dependent; it usually crashes)")
elseif code == 124 or code == 137 then
  print(("     the child process hung and was stopped after %d s: one lua_State was entered by several threads"):format(CHILD_SECONDS))
else
  local how_died = code > 128 and ("killed by signal " .. (code - 128)) or ("exit status " .. code)
  print(("     the child process died (%s): one lua_State was entered by several threads"):format(how_died))
end

-- 2. The same comparator through lj-async: its own states, never entered by two threads.
print("\n2. The same comparator as an lj-async callback:")
local compare = function(a, b) return a[0] - b[0] end
local serial = CallbackFactory("int (*)(const int *, const int *)")(compare)
run("one state (calls serialized)", serial)
local parallel = CallbackFactory("int (*)(const int *, const int *)")(compare, { states = THREADS })
run(("up to %d states (calls in parallel)"):format(THREADS), parallel)
print(("     the parallel callback now holds %d states"):format(parallel:states()))

-- 3. Errors on foreign threads reach someone instead of killing the process.
print("\n3. A Lua error raised on those threads:")
local failing = CallbackFactory("int (*)(const int *, const int *)")(function(a, b)
  if a[0] == 1234 or b[0] == 1234 then error("no good order for 1234") end
  return a[0] - b[0]
end, { default = 0, on_error = "-- keep stderr quiet for the demo", name = "failing compare" })
local jobs = arrays()
jobs[1].data[0] = 1234
sort_on_threads(failing:funcptr(), jobs)
local n, last = failing:errors()
print(("     %d error(s) caught; qsort received the default value 0; the last one:\n     %s")
  :format(n, (last or ""):gsub("\n", "\n     ")))

serial:free(); parallel:free(); failing:free(); start:free()
if not all_correct or n == 0 then
  io.stderr:write("demo: FAILED (wrong results or no error caught)\n")
  os.exit(1)
end
print("\nDone: the process is still alive, every callback freed.")
