-- lj-async.pool: LÖVE's "async" API, Luanti's async environment API, the anchor bugs of both
-- shown absent, results and errors, scaling, IPC, several owners at once, volume.
local ffi = require "ffi"
local H = require "spec.helpers"
local async = require "lj-async.pool"
local C = require "lj-async.pool_abi"

ffi.cdef [[
struct ljt_pollfd { int fd; short events; short revents; };
int poll(struct ljt_pollfd *fds, unsigned long n, int timeout);
]]

local now = C.ljasync_pool_now

-- A timed wait that is the point of the test (a job must sit in the queue), not a race fix.
local function pause(seconds)
  async.ipc_poll("spec: never set", seconds)
end

-- Polls `cond` until it holds or a generous deadline passes; returns whether it held.
-- Delivers nothing: results stay in the inbox.
local function eventually(cond, seconds)
  local deadline = now() + (seconds or 10)
  while now() < deadline do
    if cond() then return true end
    pause(0.002)
  end
  return cond()
end

-- Every test starts from a pool with no workers, autoscaling off and default limits.
local function reset(workers)
  assert(async.shutdown { timeout = 30 })
  async.configure { autoscale = false, min_workers = 0, max_workers = async.cpu_count(), idle_timeout = 5,
                    warn_after = 11.5, max_queued = 0, when_full = "block" }
  async.ipc_set("release", nil)
  if workers then async.ensure.exactly(workers) end
end

-- A job that blocks its worker until the owner sets IPC key "release".
local function blocker(tag)
  return async.handle_async(function(t)
    local pool = require "lj-async.pool"
    assert(pool.ipc_poll("release", 30), "never released")
    return t
  end, nil, tag)
end

describe("LÖVE's async API", function()
  before_each(function() reset() end)

  it("load(n) starts n workers, getWorkerCount() counts them at once, shutdown() stops them", function()
    async.load(3)
    assert.equal(3, async.getWorkerCount())
    async.load()
    assert.equal(3, async.getWorkerCount())   -- load keeps at least n: never stops workers
    assert.is_true(async.shutdown())
    assert.equal(0, async.getWorkerCount())
    assert.equal(0, async.stats().stopping)
  end)

  it("define returns the async function; call(callback, name, ...) calls by name", function()
    async.load(2)
    local add = async.define("add", function(a, b) return a + b end)
    assert.is_function(add)
    local got = {}
    add(function(r) got[#got + 1] = r end, 2, 3)
    async.call(function(r) got[#got + 1] = r end, "add", 10, 20)
    assert.is_true(async.wait_all(10))
    table.sort(got)
    assert.same({ 5, 30 }, got)
  end)

  it("runs callbacks only in update() (or wait), on the owner's thread", function()
    async.load(1)
    local ran = false
    async.define("one", function() return 1 end)
    local done = async.stats().done
    local job = async.call(function() ran = true end, "one")
    assert.is_true(eventually(function() return async.stats().done >= done + 1 end))
    assert.is_false(ran)                   -- finished, but not delivered yet
    assert.equal("pending", job:status())
    assert.equal(1, async.update())
    assert.is_true(ran)
    assert.equal("done", job:status())
  end)

  it("update(max) delivers at most max results", function()
    async.load(2)
    local f = async.define("id", function(x) return x end)
    local n = 0
    local done = async.stats().done
    for i = 1, 10 do f(function() n = n + 1 end, i) end
    assert.is_true(eventually(function() return async.stats().done >= done + 10 end))
    assert.equal(3, async.update(3))
    assert.equal(3, n)
    assert.equal(7, async.update())
    assert.equal(10, n)
    assert.equal(0, async.update())
  end)

  it("keeps every return value, nils included (anchor bug: values cut at the first nil)", function()
    async.load(1)
    local f = async.define("holes", function() return nil, 2, nil, 4, nil end)
    local got
    f(function(...) got = H.pack(...) end)
    assert.is_true(async.wait_all(10))
    assert.same({ n = 5, nil, 2, nil, 4, nil }, got)
  end)

  it("a callback gets exactly the job's results for every count (0 to 3, nils kept, and more; plain or not)", function()
    async.load(1)
    local f = async.define("echo", function(...) return ... end)
    local cases = {
      { n = 0 }, { n = 1, nil }, { n = 1, 7 }, { n = 2, nil, "b" }, { n = 2, 1, nil }, { n = 3, nil, nil, nil },
      { n = 3, 1, { k = "v" }, false }, { n = 4, 1, 2, 3, 4 }, { n = 1, { { deep = true } } },
    }
    local got_fn, got_tbl = {}, {}
    for i, c in ipairs(cases) do
      f(function(...) got_fn[i] = H.pack(...) end, unpack(c, 1, c.n))
      f({ success = function(...) got_tbl[i] = H.pack(...) end }, unpack(c, 1, c.n))
    end
    assert.is_true(async.wait_all(10))
    for i, c in ipairs(cases) do
      assert.same(c, got_fn[i], "function callback, case " .. i)
      assert.same(c, got_tbl[i], "table callback, case " .. i)
    end
  end)

  it("a callable object as the callback is called like a function, with the results", function()
    async.load(1)
    local f = async.define("pair", function(x) return x, x + 1 end)
    local got = {}
    local obj = setmetatable({}, { __call = function(self, ...) got[#got + 1] = H.pack(...) end })
    f(obj, 1)
    f(obj, 10)
    assert.is_true(async.wait_all(10))
    table.sort(got, function(a, b) return a[1] < b[1] end)
    assert.same({ { n = 2, 1, 2 }, { n = 2, 10, 11 } }, got)
  end)

  it("a table callback: success gets the results, error gets the message", function()
    async.load(1)
    local f = async.define("maybe", function(fail) if fail then error("no luck") end return "fine" end)
    local ok, err
    f({ success = function(r) ok = r end, error = function(e) err = e end }, false)
    f({ success = function(r) ok = "wrong" end, error = function(e) err = e end }, true)
    assert.is_true(async.wait_all(10))
    assert.equal("fine", ok)
    assert.matches("job 'maybe' failed: .-no luck", err)
    assert.matches("stack traceback:", err)
  end)

  it("reports errors of plain-function callbacks on stderr (anchor bug: silently dropped)", function()
    async.load(1)
    local f = async.define("boom", function() error("kaboom") end)
    local called = false
    local out = H.capture_stderr(function()
      f(function() called = true end)
      assert.is_true(async.wait_all(10))
    end)
    assert.is_false(called)
    assert.matches("lj%-async: job 'boom' failed: .-kaboom", out)
    assert.matches("stack traceback:", out)
  end)

  it("hands unhandled errors to configure{on_error} instead of stderr", function()
    async.load(1)
    local seen = {}
    async.configure { on_error = function(e) seen[#seen + 1] = e end }
    finally(function() async.configure { on_error = function(e) io.stderr:write(e, "\n") end } end)
    async.define("boom2", function() error("handled elsewhere") end)
    local out = H.capture_stderr(function()
      async.call(nil, "boom2")
      assert.is_true(async.wait_all(10))
    end)
    assert.equal(1, #seen)
    assert.matches("handled elsewhere", seen[1])
    assert.equal("", out)
  end)

  it("ensure.exactly/atLeast/atMost reach exact counts at once and chain (anchor bug: one stop per call)", function()
    assert.equal(async.ensure, async.ensure.exactly(4))
    assert.equal(4, async.getWorkerCount())
    async.ensure.atMost(1)
    assert.equal(1, async.getWorkerCount())
    async.ensure.atLeast(3).atMost(5).atLeast(2)
    assert.equal(3, async.getWorkerCount())
    async.ensure.atMost(0)
    assert.equal(0, async.getWorkerCount())
    assert.is_true(eventually(function() local s = async.stats(); return s.stopping == 0 end))
  end)

  it("addWorker() and stopWorkers(n) change the count at once", function()
    async.addWorker(); async.addWorker()
    assert.equal(2, async.getWorkerCount())
    async.stopWorkers(1)
    assert.equal(1, async.getWorkerCount())
    async.stopWorkers(5)
    assert.equal(0, async.getWorkerCount())
  end)

  it("stopWorkers never stops a worker added later (anchor bug: stop tokens left in the queue)", function()
    async.load(1)
    local b = blocker("busy")
    assert.is_true(eventually(function() return async.stats().running == 1 end))
    async.stopWorkers(1)           -- the busy worker will leave after its job
    async.stopWorkers(3)           -- more stops than workers: nothing is left over for later
    assert.equal(0, async.getWorkerCount())
    async.addWorker()
    assert.equal(1, async.getWorkerCount())
    async.ipc_set("release", true)
    assert.same({ true, "busy" }, { async.await(b, 10) })
    -- The new worker keeps serving jobs.
    local f = async.define("after", function(x) return x + 1 end)
    local sum = 0
    for i = 1, 20 do f(function(r) sum = sum + r end, i) end
    assert.is_true(async.wait_all(10))
    assert.equal(230, sum)
    assert.is_true(eventually(function() local s = async.stats(); return s.stopping == 0 and s.workers == 1 end))
  end)

  it("stopWorkers is graceful: jobs queued before the stop still run", function()
    async.load(1)
    local b = blocker("first")
    assert.is_true(eventually(function() return async.stats().running == 1 end))
    local f = async.define("queued", function(x) return x end)
    local got = {}
    for i = 1, 5 do f(function(r) got[#got + 1] = r end, i) end
    async.stopWorkers(1)
    assert.equal(0, async.getWorkerCount())
    async.ipc_set("release", true)
    assert.is_true(async.wait_all(10))
    assert.same({ 1, 2, 3, 4, 5 }, got)
    assert.is_true(b:status() == "done")
    assert.is_true(eventually(function() return async.stats().stopping == 0 end))
  end)

  it("definitions reach workers added later; undefine refuses new calls, queued ones still run", function()
    local f = async.define("late", function(x) return x * 10 end)
    async.load(1)
    local got
    f(function(r) got = r end, 4)
    assert.is_true(async.wait_all(10))
    assert.equal(40, got)
    async.ensure.exactly(0)
    f(function(r) got = r end, 5)   -- queued with no worker
    assert.is_true(async.undefine("late"))
    assert.is_false(async.undefine("late"))
    assert.has_error(function() async.call(nil, "late", 1) end,
      "bad name: no function 'late' is defined in this state (use async.define)")
    async.addWorker()
    assert.is_true(async.wait_all(10))
    assert.equal(50, got)
  end)

  it("redefining a name: queued jobs keep the old function, new calls get the new one", function()
    async.load(0)
    local got = {}
    async.define("v", function() return "old" end)
    async.call(function(r) got[#got + 1] = r end, "v")
    async.define("v", function() return "new" end)
    async.call(function(r) got[#got + 1] = r end, "v")
    async.addWorker()
    assert.is_true(async.wait_all(10))
    table.sort(got)
    assert.same({ "new", "old" }, got)
  end)

  it("functions carry their upvalues by value", function()
    async.load(1)
    local base, names = 100, { "a", "b" }
    local f = async.define("up", function(i) return base + i, names[i] end)
    local r1, r2
    f(function(a, b) r1, r2 = a, b end, 2)
    assert.is_true(async.wait_all(10))
    assert.equal(102, r1)
    assert.equal("b", r2)
  end)

  it("refuses bad arguments with messages naming the problem", function()
    assert.has_error(function() async.define(1, print) end, "bad name: expected a string, got number")
    assert.has_error(function() async.define("x", 1) end, "bad function for 'x': expected a function, got number")
    assert.has_error(function() async.call(nil, 42) end, "bad name: expected a string, got number")
    async.define("ok", function() end)
    assert.has_error(function() async.call(5, "ok") end,
      "bad callback: expected a function, a table {success = f, error = g} or nil, got number")
    assert.has_error(function() async.call({ success = 1 }, "ok") end, "bad callback: field 'success' must be a function")
    assert.has_error(function() async.call(nil, "ok", coroutine.create(print)) end)
    assert.has_error(function() async.load(-1) end, "bad worker count: expected a whole number >= 0, got -1")
    assert.has_error(function() async.ensure.atMost(1.5) end, "bad worker count: expected a whole number >= 0, got 1.5")
    assert.has_error(function() async.stopWorkers("2") end, "bad amount: expected a whole number >= 0, got string")
    assert.has_error(function() async.update("x") end, "bad budget: expected a number of results >= 0, got string")
    assert.has_error(function() async.wait(-1) end, "bad timeout: expected seconds >= 0 or nil, got -1")
    assert.has_error(function() async.shutdown { mode = "later" } end,
      'bad option \'mode\': expected "drain" or "discard", got later')
    assert.has_error(function() async.configure { min_workers = 3, max_workers = 2 } end,
      "bad options: min_workers must be <= max_workers")
    assert.has_error(function() async.configure { nonsense = 1 } end,
      "unknown option 'nonsense' (known options: 'autoscale', 'idle_timeout', 'max_queued', 'max_workers', 'min_workers', 'on_error', 'warn_after', 'when_full')")
  end)
end)

describe("Luanti's async API", function()
  before_each(function() reset() end)

  it("handle_async(func, callback, ...) runs func with the arguments and calls back with all results", function()
    async.load(2)
    local got
    local job = async.handle_async(function(a, b, c) return c, b, a end, function(...) got = H.pack(...) end, 1, nil, "x")
    assert.equal(async.Job, getmetatable(job))
    assert.is_true(async.wait_all(10))
    assert.same({ n = 3, "x", nil, 1 }, got)
  end)

  it("grows workers while jobs wait (up to max_workers) and shrinks them when idle", function()
    async.configure { autoscale = true, min_workers = 0, max_workers = 2, idle_timeout = 0.2 }
    assert.equal(0, async.getWorkerCount())
    local jobs = {}
    for i = 1, 4 do jobs[i] = blocker(i) end
    assert.equal(2, async.getWorkerCount())         -- grown at once, capped at max_workers
    assert.is_true(eventually(function() return async.stats().running == 2 end))
    assert.equal(2, async.stats().queued)
    async.ipc_set("release", true)
    for i = 1, 4 do assert.same({ true, i }, { async.await(jobs[i], 10) }) end
    assert.is_true(eventually(function() return async.getWorkerCount() == 0 end))  -- idle 0.2 s: gone
    -- min_workers stay.
    async.configure { min_workers = 1 }
    assert.is_true(async.await(async.handle_async(function() return 1 end), 10))
    pause(0.4)
    assert.equal(1, async.getWorkerCount())
  end)

  it("grows without making Lua states on the owner's thread (Luanti makes them on its main thread)", function()
    local path = os.tmpname()
    finally(function() os.remove(path) end)
    -- Every state made from now on appends the id of the thread making it (while the file exists).
    require("lj-async.core").add_init(([[
      local path = %q
      local exists = io.open(path, "r")
      if exists then
        exists:close()
        local s = io.open("/proc/thread-self/stat")
        local f = io.open(path, "a")  -- O_APPEND: states made at once on several threads
        f:write(s:read("*l"):match("^(%%d+)") .. "\n")
        s:close(); f:close()
      end
    ]]):format(path), "=spec: record the creating thread")
    local me = io.open("/proc/thread-self/stat"):read("*l"):match("^(%d+)")
    local before = async.getWorkerCount()            -- workers left by earlier tests keep their states
    async.configure { autoscale = true, max_workers = 6 }
    local jobs = {}
    for i = 1, 6 do jobs[i] = blocker(i) end       -- six workers, more than the stock keeps ready
    assert.equal(6, async.getWorkerCount())
    assert.is_true(eventually(function() return async.stats().running == 6 end))
    async.ipc_set("release", true)
    for i = 1, 6 do async.await(jobs[i], 10) end
    local makers = {}
    for tid in io.open(path):read("*a"):gmatch("%d+") do makers[#makers + 1] = tid end
    assert.is_true(#makers >= 6 - before and #makers > 0)
    for _, tid in ipairs(makers) do assert.not_equal(me, tid) end
  end)

  it("job handles: cancel() removes a job that has not started", function()
    local ran = false
    local job = async.handle_async(function()
      require("lj-async.pool").ipc_set("cancelled job ran", true)
    end, function() ran = true end)
    assert.equal(1, async.stats().queued)
    assert.is_true(job:cancel())
    assert.is_false(job:cancel())
    assert.equal("cancelled", job:status())
    assert.same({ false, "cancelled" }, { async.await(job) })
    assert.equal(0, async.stats().queued)
    async.load(1)
    assert.is_true(async.await(async.handle_async(function() return true end), 10))
    assert.is_nil(async.ipc_get("cancelled job ran"))
    assert.is_false(ran)
    assert.equal(0, async.stats().outstanding)
  end)

  it("cancel() of a running or finished job returns false and changes nothing", function()
    async.load(1)
    local b = blocker("running")
    assert.is_true(eventually(function() return async.stats().running == 1 end))
    assert.is_false(b:cancel())
    async.ipc_set("release", true)
    assert.same({ true, "running" }, { async.await(b, 10) })
    assert.is_false(b:cancel())
    assert.equal("done", b:status())
  end)

  it("register_async_dofile loads a file into every worker, present and future", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[
      preloaded_answer = 42
      local pool = require "lj-async.pool"
      repeat local n = pool.ipc_get("inits") until pool.ipc_cas("inits", n, (n or 0) + 1)
    ]])
    f:close()
    finally(function() os.remove(path) end)
    async.load(1)
    assert.is_true(async.await(async.handle_async(function() return 0 end), 10))  -- a worker already running
    async.ipc_set("inits", nil)
    async.register_async_dofile(path)
    async.addWorker()                                                         -- and a later one
    local jobs = { blocker(1), blocker(2) }                                   -- one job on each worker
    assert.is_true(eventually(function() return async.stats().running == 2 end))
    async.ipc_set("release", true)
    for i = 1, 2 do async.await(jobs[i], 10) end
    local got = {}
    for i = 1, 8 do async.handle_async(function() return preloaded_answer end, function(v) got[#got + 1] = v end) end
    assert.is_true(async.wait_all(10))
    assert.same({ 42, 42, 42, 42, 42, 42, 42, 42 }, got)
    assert.equal(2, async.ipc_get("inits"))
    assert.has_error(function() async.register_async_dofile("/nonexistent/file.lua") end)
    local bad = os.tmpname()
    f = io.open(bad, "w"); f:write("this is not lua"); f:close()
    finally(function() os.remove(bad) end)
    assert.has_error(function() async.register_async_dofile(bad) end)
  end)

  it("globals persist between jobs on one worker (as in Luanti)", function()
    async.load(1)
    async.await(async.handle_async(function() counter_global = (counter_global or 0) + 5 end), 10)
    local ok, v = async.await(async.handle_async(function() return counter_global end), 10)
    assert.is_true(ok)
    assert.equal(5, v)
  end)

  it("register_portable_metatable: tables keep their metatable across states, both ways", function()
    local Vec = {}
    Vec.__index = Vec
    function Vec.len2(v) return v.x * v.x + v.y * v.y end
    assert.is_true(async.register_portable_metatable("spec.Vec", Vec))
    async.load(1)
    local ok, len2, back = async.await(async.handle_async(function(v)
      return v:len2(), setmetatable({ x = v.y, y = v.x }, getmetatable(v))
    end, nil, setmetatable({ x = 3, y = 4 }, Vec)), 10)
    assert.is_true(ok)
    assert.equal(25, len2)
    assert.equal(Vec, getmetatable(back))
    assert.equal(4, back.x)
    assert.equal(25, back:len2())
  end)

  -- The job tells whether this worker has run its very function object before.
  local function seen_before()
    local me = debug.getinfo(1, "f").func
    local seen = rawget(_G, "spec_seen_functions") or setmetatable({}, { __mode = "k" })
    rawset(_G, "spec_seen_functions", seen)
    local before = seen[me] == true
    seen[me] = true
    return before
  end

  it("handle_async loads a function without upvalues once per worker, however often it is submitted", function()
    async.load(1)
    assert.same({ true, false }, { async.await(async.handle_async(seen_before), 10) })
    for _ = 1, 3 do
      assert.same({ true, true }, { async.await(async.handle_async(seen_before), 10) })
    end
    -- Another function object with the same code is another job function.
    local other = loadstring(string.dump(seen_before))
    assert.same({ true, false }, { async.await(async.handle_async(other), 10) })
  end)

  it("handle_async copies a function's upvalues afresh for every job", function()
    async.load(1)
    local k, count = 1, 0
    local function job() count = count + 1; return k, count end
    assert.same({ true, 1, 1 }, { async.await(async.handle_async(job), 10) })
    k = 2
    assert.same({ true, 2, 1 }, { async.await(async.handle_async(job), 10) })  -- count was copied again
    assert.equal(0, count)                                                     -- and never came back
    assert.same({ true, false }, { async.await(async.handle_async(function()
      local before = seen_before()  -- an upvalue: a fresh copy of seen_before every time
      return before
    end), 10) })
  end)

  it("handle_async with many distinct functions runs each one right (cached definitions are bounded)", function()
    async.load(2)
    local got, want = 0, 0
    for i = 1, 300 do
      local f = loadstring(("return function(x) return x + %d end"):format(i))()
      want = want + i + 1
      async.handle_async(f, function(v) got = got + v end, 1)
      if i % 7 == 0 then async.handle_async(f, function(v) got = got + v end, 1); want = want + i + 1 end
    end
    assert.is_true(async.wait_all(30))
    assert.equal(want, got)
  end)

  it("handle_async names a bad argument by its place, and a failing cached function by where it is defined", function()
    async.load(1)
    local function bad() error("boom") end
    assert.is_true(async.await(async.handle_async(function() return 1 end), 10))
    assert.has_error(function() async.handle_async(bad, nil, 1, coroutine.create(print)) end,
      "bad job: argument 3: cannot move a coroutine")
    for _ = 1, 2 do
      local ok, err = async.await(async.handle_async(bad), 10)
      assert.is_false(ok)
      assert.matches("^the job function defined at .-pool_spec%.lua:%d+ failed: .-pool_spec%.lua:%d+: boom", err)
    end
  end)
end)

describe("IPC", function()
  before_each(function() reset() end)

  it("ipc_set stores a copy, ipc_get returns a copy, nil deletes", function()
    local t = { a = 1, list = { 1, 2, 3 } }
    async.ipc_set("k", t)
    t.a = 2
    local got = async.ipc_get("k")
    assert.same({ a = 1, list = { 1, 2, 3 } }, got)
    got.a = 3
    assert.equal(1, async.ipc_get("k").a)
    async.ipc_set("k", nil)
    assert.is_nil(async.ipc_get("k"))
    assert.has_error(function() async.ipc_set(1, 2) end, "bad key: expected a string, got number")
  end)

  it("ipc_cas swaps only when the old value matches (nil = absent)", function()
    assert.is_true(async.ipc_cas("c", nil, 1))
    assert.is_false(async.ipc_cas("c", nil, 2))
    assert.is_false(async.ipc_cas("c", 5, 2))
    assert.is_true(async.ipc_cas("c", 1, "one"))
    assert.equal("one", async.ipc_get("c"))
    assert.is_true(async.ipc_cas("c", "one", nil))
    assert.is_nil(async.ipc_get("c"))
  end)

  it("ipc_cas from several workers counts to the exact total", function()
    async.load(async.cpu_count() + 2)
    local JOBS, EACH = 40, 250
    local failed = async.stats().failed
    async.ipc_set("count", 0)
    for _ = 1, JOBS do
      async.handle_async(function(n)
        local pool = require "lj-async.pool"
        for _ = 1, n do
          repeat local v = pool.ipc_get("count") until pool.ipc_cas("count", v, v + 1)
        end
      end, nil, EACH)
    end
    assert.is_true(async.wait_all(60))
    assert.equal(JOBS * EACH, async.ipc_get("count"))
    assert.equal(failed, async.stats().failed)
  end)

  it("ipc_poll waits for a value set by another state, or times out", function()
    local t = now()
    assert.is_false(async.ipc_poll("p", 0.05))
    assert.is_true(now() - t >= 0.04)
    async.load(1)
    async.handle_async(function()
      local pool = require "lj-async.pool"
      pool.ipc_set("p", "here")
    end)
    assert.is_true(async.ipc_poll("p", 10))
    assert.equal("here", async.ipc_get("p"))
    assert.is_true(async.ipc_poll("p", 0))
    assert.is_true(async.wait_all(10))
  end)
end)

describe("results and errors", function()
  before_each(function() reset() end)

  it("a job whose definition is withdrawn before it starts comes back cancelled, not failed", function()
    reset(1)
    async.define("spec withdrawn", function(x) return x end)
    local id
    for d in pairs(require("lj-async.pool.jobs").stored) do
      if d.name == "spec withdrawn" then id = d.id end
    end
    assert.is_number(id)
    local b = blocker("b")
    local called = false
    local job = async.call(function() called = true end, "spec withdrawn", 1)
    local cancelled = async.stats().cancelled
    -- Only its owner's closing withdraws a definition that still has jobs (jobs.lua keeps a
    -- retired one until its last job): done here by hand while the job waits behind the blocker.
    C.ljasync_pool_undefine(id)
    async.ipc_set("release", true)
    assert.is_true(async.wait_all(10))
    assert.equal("done", b:status())
    assert.equal("cancelled", job:status())
    assert.is_false(called)
    assert.equal(cancelled + 1, async.stats().cancelled)
  end)

  it("wait(timeout) blocks until results arrive, returns 0 with nothing in flight, nil, 'timeout' otherwise", function()
    assert.equal(0, async.wait(0.01))
    local got
    async.handle_async(function() return "late" end, function(v) got = v end)
    assert.same({ nil, "timeout" }, { async.wait(0.05) })  -- no worker yet
    async.load(1)
    assert.equal(1, async.wait(10))
    assert.equal("late", got)
  end)

  it("fd() is readable exactly while results wait", function()
    local fd = async.fd()
    assert.is_number(fd)
    assert.equal(fd, async.fd())
    local pfd = ffi.new("struct ljt_pollfd[1]")
    pfd[0].fd, pfd[0].events = fd, 1  -- POLLIN
    assert.equal(0, ffi.C.poll(pfd, 1, 0))
    async.load(1)
    local got
    async.handle_async(function() return 7 end, function(v) got = v end)
    assert.equal(1, ffi.C.poll(pfd, 1, 10000))
    assert.equal(1, async.update())
    assert.equal(7, got)
    assert.equal(0, ffi.C.poll(pfd, 1, 0))
  end)

  it("await() in a coroutine yields until update()/wait() delivers the job", function()
    async.load(1)
    local log = {}
    local co = coroutine.wrap(function()
      local job = async.handle_async(function(x) return x * 2, nil end, nil, 21)
      log[#log + 1] = H.pack(async.await(job))
      local bad = async.handle_async(function() error("inner") end)
      log[#log + 1] = H.pack(async.await(bad))
    end)
    co()
    assert.equal(0, #log)             -- suspended in await
    assert.is_true(async.wait_all(10))
    assert.equal(2, #log)
    assert.same({ n = 3, true, 42, nil }, log[1])
    assert.is_false(log[2][1])
    assert.matches("inner", log[2][2])
  end)

  it("await() outside a coroutine blocks, delivering other results meanwhile", function()
    async.load(1)
    local other
    async.handle_async(function() return "other" end, function(v) other = v end)
    local ok, v = async.await(async.handle_async(function() return "mine" end), 10)
    assert.is_true(ok)
    assert.equal("mine", v)
    assert.is_true(async.wait_all(10))
    assert.equal("other", other)
    local b = blocker("slow")
    assert.same({ nil, "timeout" }, { async.await(b, 0.05) })
    async.ipc_set("release", true)
    assert.same({ true, "slow" }, { async.await(b, 10) })
  end)

  it("an error names the job's origin, carries the traceback, and never kills the worker", function()
    async.load(1)
    local errors = {}
    local function on_err(e) errors[#errors + 1] = e end
    async.handle_async(function() worker_mark = "kept"; local t = nil; return t.field end, { error = on_err })
    async.handle_async(function() return coroutine.create(print) end, { error = on_err })  -- result cannot cross
    async.handle_async(function() error({ code = 1 }) end, { error = on_err })
    assert.is_true(async.wait_all(10))
    assert.equal(3, #errors)
    assert.matches("^the job function defined at .-pool_spec%.lua:%d+ failed: .-pool_spec%.lua:%d+: attempt to index", errors[1])
    assert.matches("stack traceback:", errors[1])
    assert.matches("coroutine", errors[2])
    assert.matches("error object is a table value", errors[3])
    assert.equal(1, async.getWorkerCount())
    local ok, mark = async.await(async.handle_async(function() return worker_mark end), 10)
    assert.is_true(ok)
    assert.equal("kept", mark)  -- the same worker state went on
  end)

  it("a callback that raises stops update(); the other results wait for the next update()", function()
    async.load(1)
    local f = async.define("n", function(x) return x end)
    local seen = {}
    local done = async.stats().done
    f(function() error("callback trouble") end, 1)
    for i = 2, 4 do f(function(v) seen[#seen + 1] = v end, i) end
    assert.is_true(eventually(function() return async.stats().done >= done + 4 end))
    assert.has_error(function() async.update() end)
    async.update()
    assert.same({ 2, 3, 4 }, seen)
  end)

  it("the callbacks of one owner run in the order the jobs finished", function()
    async.load(1)  -- one worker: finishing order is submission order
    local f = async.define("order", function(x) return x end)
    local got = {}
    for i = 1, 200 do f(function(v) got[#got + 1] = v end, i) end
    assert.is_true(async.wait_all(10))
    for i = 1, 200 do assert.equal(i, got[i]) end
  end)
end)

describe("operability", function()
  before_each(function() reset() end)

  it("shutdown() drains: queued jobs run and their callbacks run before it returns (anchor bug: results dropped)", function()
    async.load(2)
    local f = async.define("sq", function(x) return x * x end)
    local sum, n = 0, 0
    for i = 1, 500 do f(function(v) sum = sum + v; n = n + 1 end, i) end
    assert.is_true(async.shutdown())
    assert.equal(500, n)
    assert.equal(500 * 501 * 1001 / 6, sum)
    assert.equal(0, async.getWorkerCount())
    assert.equal(0, async.stats().outstanding)
  end)

  it("shutdown{mode = 'discard', timeout}: queued jobs of this state are dropped; a late job still reports", function()
    async.load(1)
    local b = blocker("running")
    assert.is_true(eventually(function() return async.stats().running == 1 end))
    local f = async.define("never", function() return "ran" end)
    local ran = 0
    local queued = {}
    for i = 1, 5 do queued[i] = f(function() ran = ran + 1 end) end
    local cancelled = async.stats().cancelled
    assert.same({ nil, "timeout" }, { async.shutdown { mode = "discard", timeout = 0.1 } })
    assert.equal(cancelled + 5, async.stats().cancelled)
    for i = 1, 5 do assert.same({ false, "cancelled" }, { async.await(queued[i]) }) end
    async.ipc_set("release", true)
    assert.same({ true, "running" }, { async.await(b, 10) })  -- its result still comes, by update/wait
    assert.equal(0, ran)
    assert.is_true(eventually(function() return async.stats().stopping == 0 end))
  end)

  it("after shutdown, a new job starts workers again (autoscaling is back on)", function()
    async.load(1)
    assert.is_true(async.shutdown())
    assert.is_true(async.configure().autoscale)
    assert.same({ true, "again" }, { async.await(async.handle_async(function() return "again" end), 10) })
  end)

  it("max_queued: call fails at once with when_full = 'fail', after a while with seconds, or blocks", function()
    async.configure { max_queued = 2, when_full = "fail" }
    local f = async.define("cap", function(x) return x end)
    assert.is_table(f(nil, 1))
    assert.is_table(f(nil, 2))
    assert.same({ nil, "full" }, { f(nil, 3) })
    assert.same({ nil, "full" }, { async.handle_async(function() end) })
    async.configure { when_full = 0.05 }
    local t = now()
    assert.same({ nil, "full" }, { f(nil, 3) })
    assert.is_true(now() - t >= 0.04)
    -- Blocking: a worker empties the queue while the call waits.
    async.configure { when_full = "block" }
    async.load(1)
    assert.is_table(f(nil, 3))
    assert.is_true(async.wait_all(10))
    assert.equal(0, async.stats().outstanding)
  end)

  it("stats() counts queued, running, done, failed, cancelled and workers", function()
    local s0 = async.stats()
    async.handle_async(function() return 1 end)
    async.handle_async(function() error("x") end, { error = function() end })
    local gone = async.handle_async(function() end)
    assert.is_true(gone:cancel())
    local s1 = async.stats()
    assert.equal(2, s1.queued)
    assert.equal(2, s1.outstanding)
    assert.equal(s0.cancelled + 1, s1.cancelled)
    async.load(1)
    assert.is_true(async.wait_all(10))
    local s2 = async.stats()
    assert.equal(0, s2.queued)
    assert.equal(0, s2.running)
    assert.equal(s0.done + 1, s2.done)
    assert.equal(s0.failed + 1, s2.failed)
    assert.equal(1, s2.workers)
  end)

  it("warns on stderr when a job waited in the queue longer than warn_after", function()
    async.configure { warn_after = 0.05 }
    local f = async.define("patient", function() return true end)
    local out = H.capture_stderr(function()
      f(nil)
      pause(0.1)                       -- no worker: the job waits
      async.load(1)
      assert.is_true(async.wait_all(10))
    end)
    assert.matches("lj%-async: job 'patient' waited 0%.%d s in the queue before a worker took it", out)
    -- Nobody takes the job at all: the next submission notices.
    async.ensure.exactly(0)
    out = H.capture_stderr(function()
      f(nil)
      pause(0.1)
      f(nil)
    end)
    assert.matches("lj%-async: 2 jobs wait in the pool's queue; the oldest has waited 0%.%d s %(0 workers", out)
    async.load(1)
    H.capture_stderr(function() assert.is_true(async.wait_all(10)) end)
  end)
end)

describe("several owners and volume", function()
  before_each(function() reset(2) end)

  it("takes jobs from several states at once; each gets its own results", function()
    local CallbackFactory = require "lj-async.callback"
    -- Each call, on its own C thread and callback state, submits a job and awaits it.
    local cb = CallbackFactory("int(*)(int)")(function(x)
      local pool = require "lj-async.pool"
      local job = pool.handle_async(function(v) return v * 3 end, nil, x)
      local ok, r = pool.await(job, 30)
      if not ok then error(r) end
      return r
    end, { states = 3 })
    finally(function() cb:free() end)
    -- Meanwhile this state keeps its own jobs in flight.
    local mine = 0
    for i = 1, 50 do async.handle_async(function(v) return v end, function(v) mine = mine + v end, i) end
    local calls = 200
    local sums = ffi.new("long long[3]")
    assert.is_true(H.C.ljt_call_threads(cb:funcptr(), 3, calls, sums) > 0)
    assert.equal(0, cb:errors())
    for t = 0, 2 do
      local first = t * calls
      local want = 3 * (calls * first + calls * (calls - 1) / 2)
      assert.equal(want, tonumber(sums[t]))
    end
    assert.is_true(async.wait_all(10))
    assert.equal(50 * 51 / 2, mine)
  end)

  it("takes jobs from threads' states (lj-async.thread) while this state submits too", function()
    local Thread = require "lj-async.thread"
    local sums = ffi.new("double[3]")
    local threads = {}
    for t = 0, 2 do
      threads[t + 1] = Thread.new(function(ud)
        local ffi = require "ffi"
        local pool = require "lj-async.pool"
        local out = ffi.cast("double *", ud)
        local sq = pool.define("sq", function(x) return x * x end)
        local sum = 0
        for i = 1, 300 do sq(function(v) sum = sum + v end, i) end
        assert(pool.wait_all(30))
        out[0] = sum
        return 0
      end, sums + t)
    end
    local mine = 0
    for i = 1, 300 do async.handle_async(function(x) return -x end, function(v) mine = mine + v end, i) end
    for t = 1, 3 do
      assert.is_true(threads[t]:join(30))
      threads[t]:destroy()
    end
    assert.is_true(async.wait_all(10))
    for t = 0, 2 do assert.equal(300 * 301 * 601 / 6, sums[t]) end
    assert.equal(-300 * 301 / 2, mine)
  end)

  it("a state that goes away: its queued jobs are dropped, its running job finishes", function()
    async.ensure.exactly(1)
    local b = blocker("hold")
    assert.is_true(eventually(function() return async.stats().running == 1 end))
    local cancelled = async.stats().cancelled
    local CallbackFactory = require "lj-async.callback"
    local cb = CallbackFactory("int(*)(int)")(function()
      local pool = require "lj-async.pool"
      pool.define("orphan", function() return 1 end)
      pool.handle_async(function() require("lj-async.pool").ipc_set("orphan ran", true) end)
      return pool.stats().outstanding
    end)
    assert.equal(1, cb:funcptr()(0))
    assert.equal(1, async.stats().queued)
    cb:free()                         -- its state closes (on the state stock's thread)
    assert.is_true(eventually(function() return async.stats().queued == 0 end))
    assert.equal(cancelled + 1, async.stats().cancelled)
    async.ipc_set("release", true)
    assert.same({ true, "hold" }, { async.await(b, 10) })
    assert.is_true(async.await(async.handle_async(function() return true end), 10))
    assert.is_nil(async.ipc_get("orphan ran"))
  end)

  it("100,000 jobs: every result arrives exactly once", function()
    local f = async.define("echo", function(i) return i, -i end)
    local N = 100000
    local seen = {}
    local count, bad = 0, 0
    local function collect(i, neg)
      if seen[i] or neg ~= -i then bad = bad + 1 end
      seen[i] = true
      count = count + 1
    end
    for i = 1, N do f(collect, i) end
    assert.is_true(async.wait_all(120))
    assert.equal(N, count)
    assert.equal(0, bad)
    for i = 1, N do if not seen[i] then error("missing result " .. i) end end
    assert.equal(0, async.stats().outstanding)
  end)
end)

describe("the C ABI and the hot paths", function()
  before_each(function() reset(1) end)

  it("call + update compile to traces with no NYI in the pool's code", function()
    local f = async.define("hot", function(x) return x + 1 end)
    local sum = 0
    local function cb(v) sum = sum + v end
    local path = os.tmpname()
    local v = require "jit.v"
    jit.flush()  -- record afresh, under jit.v
    v.on(path)
    for _ = 1, 20 do
      for i = 1, 200 do f(cb, i) end
      async.wait_all(10)
    end
    v.off()
    local log = io.open(path):read("*a")
    os.remove(path)
    assert.equal(20 * (200 * 201 / 2 + 200), sum)
    assert.matches("%[TRACE%s+%d+ .-pool_spec%.lua:%d+ loop%]", log)
    for line in log:gmatch("[^\n]+") do
      if line:match("pool%.lua") and (line:match("NYI") or line:match("blacklisted")) then
        error("trace problem in the pool: " .. line)
      end
    end
  end)
end)

-- Runs Lua source in a fresh `luajit` process (this tree's modules and core); returns what it
-- wrote to stdout and stderr.
local function run_script(src)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write('package.path = "./lua/?.lua;" .. package.path\n', src)
  f:close()
  local p = io.popen("luajit " .. script .. " 2>&1")
  local out = p:read("*a")
  p:close()
  os.remove(script)
  return out
end

describe("workers that cannot start", function()
  before_each(function() reset() end)

  -- Init code that raises until IPC key `key` is set: workers started meanwhile cannot start.
  -- (Init files stay registered for the life of the process: the fix is the key.)
  local function failing_init(key)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(([[
      local pool = require "lj-async.pool"
      assert(pool.ipc_get(%q), "spec fixture: the key is not set yet")
    ]]):format(key))
    f:close()
    finally(function() os.remove(path) end)
    async.register_async_dofile(path)
  end

  it("fail the jobs waiting for them with the reason, say so once on stderr, and are not respawned", function()
    async.configure { autoscale = true }
    failing_init("spec: init ready 1")
    local errors, successes = {}, 0
    local err = H.capture_stderr(function()
      for _ = 1, 3 do
        async.handle_async(function() return 1 end,
          { success = function() successes = successes + 1 end, error = function(e) errors[#errors + 1] = e end })
      end
      assert.is_true(async.wait_all(10))
      pause(0.2)  -- a respawn loop would start (and fail) workers meanwhile
      assert.equal(0, async.update())
    end)
    assert.equal(0, successes)
    assert.equal(3, #errors)
    for _, e in ipairs(errors) do
      assert.matches("no pool worker could start: async file .- failed: .-the key is not set yet", e)
    end
    local lines = {}
    for line in err:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(1, #lines, err)
    assert.matches("^lj%-async: pool: a worker cannot start: async file .-the key is not set yet", lines[1])
    assert.equal(0, async.getWorkerCount())
    assert.equal(0, async.stats().workers)
    -- Fixed: the next submission tries again once, and works.
    async.ipc_set("spec: init ready 1", true)
    assert.same({ true, "fixed" }, { async.await(async.handle_async(function() return "fixed" end), 10) })
    assert.equal(1, async.getWorkerCount())
  end)

  it("with explicit counts: getWorkerCount() says 0, and the next submit, ensure or addWorker tries again", function()
    failing_init("spec: init ready 2")
    local err = H.capture_stderr(function()
      async.load(2)
      local ok, e = async.await(async.handle_async(function() return 1 end), 10)
      assert.is_false(ok)
      assert.matches("no pool worker could start", e)
      assert.equal(0, async.getWorkerCount())
      -- Each of these tries once more (and fails again, silently: the reason was said).
      async.addWorker()
      assert.is_false((async.await(async.handle_async(function() return 1 end), 10)))
      async.ensure.exactly(2)
      assert.is_false((async.await(async.handle_async(function() return 1 end), 10)))
      assert.equal(0, async.getWorkerCount())
      assert.is_true(async.shutdown { timeout = 10 })
      assert.equal(0, async.getWorkerCount())
    end)
    local n = 0
    for _ in err:gmatch("a worker cannot start") do n = n + 1 end
    assert.equal(1, n, err)
    -- Fixed: the next submission starts the two workers asked for last.
    async.configure { autoscale = false }
    async.ensure.exactly(2)
    assert.is_false((async.await(async.handle_async(function() return 1 end), 10)))  -- both failed first
    assert.equal(0, async.getWorkerCount())
    async.ipc_set("spec: init ready 2", true)
    assert.same({ true, "two" }, { async.await(async.handle_async(function() return "two" end), 10) })
    assert.equal(2, async.getWorkerCount())
  end)

  it("a file that fails in a running worker: the worker leaves, its job goes to one that can run it", function()
    async.load(1)
    assert.is_true((async.await(async.handle_async(function() return 1 end), 10)))
    local err = H.capture_stderr(function()
      failing_init("spec: init ready 3")
      local ok, e = async.await(async.handle_async(function() return 1 end), 10)
      assert.is_false(ok)
      assert.matches("no pool worker could start: async file .-the key is not set yet", e)
      assert.equal(0, async.getWorkerCount())
    end)
    assert.matches("a worker cannot start", err)
    async.ipc_set("spec: init ready 3", true)
    assert.same({ true, 3 }, { async.await(async.handle_async(function() return 3 end), 10) })
    assert.equal(1, async.getWorkerCount())
  end)

  it("a module the init file needs appears on the path: the next job recovers (fresh process)", function()
    local out = run_script([=[
      local async = require "lj-async.pool"
      local dir = os.tmpname(); os.remove(dir); assert(os.execute("mkdir " .. dir) == 0)
      package.path = dir .. "/?.lua;" .. package.path
      require("lj-async.core").C.ljasync_env_set_paths(package.path, package.cpath)
      local f = io.open(dir .. "/init.lua", "w"); f:write('require "spec_later_module"\n'); f:close()
      async.register_async_dofile(dir .. "/init.lua")
      local ok, e = async.await(async.handle_async(function() return 1 end), 10)
      print(ok, (e:match("module 'spec_later_module' not found")))
      print("workers", async.getWorkerCount())
      f = io.open(dir .. "/spec_later_module.lua", "w"); f:write("later = 42\n"); f:close()
      print(async.await(async.handle_async(function() return later end), 10))
      os.remove(dir .. "/spec_later_module.lua"); os.remove(dir .. "/init.lua"); os.remove(dir)
    ]=])
    assert.matches("false\tmodule 'spec_later_module' not found\nworkers\t0\ntrue\t42\n", out)
    local n = 0
    for _ in out:gmatch("a worker cannot start") do n = n + 1 end
    assert.equal(1, n, out)
  end)

  it("a state that cannot run the environment's init code fails the job too", function()
    local core = require "lj-async.core"
    finally(function() core.add_init("", "=spec: raising init") end)  -- replaced by name
    core.add_init("error('spec: broken init code')", "=spec: raising init")
    async.load(1)
    local ok, e = async.await(async.handle_async(function() return 1 end), 10)
    assert.is_false(ok)
    assert.matches("no pool worker could start: init code .-spec: broken init code", e)
    core.add_init("", "=spec: raising init")
    assert.same({ true, 1 }, { async.await(async.handle_async(function() return 1 end), 10) })
  end)
end)

describe("results nobody took", function()
  it("a state that closes with results nobody took says so once on stderr", function()
    local out = run_script([=[
      local async = require "lj-async.pool"
      for i = 1, 3 do async.handle_async(function(x) return x end, print, i) end
      -- The script ends without update(): its state closes with the three in flight or waiting.
    ]=])
    assert.equal("lj-async: pool: 3 results were never taken (call async.update() or async.wait())\n", out)
  end)

  it("so does a process that exits without closing its state (os.exit)", function()
    local out = run_script([=[
      local async = require "lj-async.pool"
      local jobs = {}
      for i = 1, 2 do jobs[i] = async.handle_async(function(x) return x end, nil, i) end
      async.load(1)
      local Thread = require "lj-async.thread"
      while async.stats().done < 2 do Thread.sleep(0.001) end  -- both results wait in the inbox
      os.exit(0)
    ]=])
    assert.equal("lj-async: pool: 2 results were never taken (call async.update() or async.wait())\n", out)
  end)

  it("says nothing when every result was taken", function()
    local out = run_script([=[
      local async = require "lj-async.pool"
      for i = 1, 3 do async.handle_async(function(x) return x end, nil, i) end
      assert(async.wait_all(10))
      io.write("done")
    ]=])
    assert.equal("done", out)
  end)
end)
