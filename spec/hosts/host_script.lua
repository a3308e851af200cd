-- Run by the C hosts of spec/hosts/ (see CMakeLists.txt): lj-async inside a program that embeds
-- LuaJIT. A callback called from C threads, a Thread, a channel and a pool job, each checked.
-- $LJASYNC_HOST_EXPECT, when set, must occur in where the core says the LuaJIT API came from.
local ffi = require "ffi"
local core = require "lj-async.core"
local expect = os.getenv("LJASYNC_HOST_EXPECT")
io.write("host: LuaJIT C API from ", tostring(core.luajit), "\n")
if expect and not (core.luajit or ""):find(expect, 1, true) then
  error(("expected the API from %q, got %q"):format(expect, core.luajit))
end

-- A callback called from 4 C threads at once (spec/c/callers.c), on 2 states.
ffi.cdef [[ double ljt_call_threads(int (*fp)(int), int nthreads, int calls, long long *sums); ]]
local T = ffi.load(assert(os.getenv("LJASYNC_TESTC"), "LJASYNC_TESTC is not set"))
local CallbackFactory = require "lj-async.callback"
local cb = CallbackFactory("int(*)(int)")(function(n) return n * 2 + 1 end, { states = 2 })
local threads, calls = 4, 2000
local sums = ffi.new("long long[?]", threads)
assert(T.ljt_call_threads(cb:funcptr(), threads, calls, sums) >= 0, "ljt_call_threads failed")
for t = 0, threads - 1 do
  local want = 0
  for i = 0, calls - 1 do want = want + (t * calls + i) * 2 + 1 end
  assert(tonumber(sums[t]) == want, ("thread %d: sum %s, want %d"):format(t, tostring(sums[t]), want))
end
assert(select(1, cb:errors()) == 0, "the callback raised errors")
cb:free()

-- A Thread, with values in and out.
local Thread = require "lj-async.thread"
local ok, sum, word = Thread.spawn(function(a, b) return a + b, "sum" end, 40, 2):join()
assert(ok == true and sum == 42 and word == "sum", ("thread: %s %s %s"):format(tostring(ok), tostring(sum), tostring(word)))

-- A channel fed by another thread.
local sync = require "lj-async.sync"
local ch = sync.channel(16)
local producer = Thread.spawn(function(c)
  for i = 1, 100 do c:push({ i = i }) end
  c:close()
end, ch)
local total = 0
while true do
  local v, why = ch:pop(10)
  if v == nil then assert(why == "closed", "channel: " .. tostring(why)) break end
  total = total + v.i
end
assert(total == 5050, "channel: total " .. total)
assert(producer:join())

-- A pool job, its result delivered in this state.
local async = require "lj-async.pool"
local result
async.handle_async(function(a, b) return a * b end, function(r) result = r end, 6, 7)
async.wait_all(30)
assert(result == 42, "pool: result " .. tostring(result))
assert(async.shutdown())
io.write("host: callback, thread, channel and pool job passed\n")
