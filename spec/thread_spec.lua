-- lj-async.thread: the seed's API, errors, detaching, cancellation, names, leaks.
local ffi = require "ffi"
local H = require "spec.helpers"
local Thread = require "lj-async.thread"

ffi.cdef [[
double ljt_pthread_spawn_join_ns(int n);
int ljt_atomic_load(const int *p);
void ljt_atomic_store(int *p, int v);
int ljt_atomic_add(int *p, int v);
int clock_gettime(int clk, void *ts);
]]
local T = H.C

local ts = ffi.new("int64_t[2]")
local function clock(id)
  ffi.C.clock_gettime(id, ts)
  return tonumber(ts[0]) + tonumber(ts[1]) * 1e-9
end
local function now() return clock(1) end            -- CLOCK_MONOTONIC
local function thread_cpu() return clock(3) end      -- CLOCK_THREAD_CPUTIME_ID

--- Polls `cond` (with Thread.sleep) until it holds or `seconds` pass; returns whether it held.
local function eventually(cond, seconds)
  local deadline = now() + (seconds or 10)
  while not cond() do
    if now() > deadline then return false end
    Thread.sleep(0.001)
  end
  return true
end

-- Source prepended to thread bodies: `ud`, ffi, the module and the atomics of the C driver.
local TPRE = [[
local ud = ...
local ffi = require "ffi"
local Thread = require "lj-async.thread"
ffi.cdef "int ljt_atomic_load(const int *p); void ljt_atomic_store(int *p, int v); int ljt_atomic_add(int *p, int v);"
local T = ffi.load(os.getenv("LJASYNC_TESTC") or "build/libljasync_testc.so")
local function wait_for(p, v) while T.ljt_atomic_load(p) < v do Thread.sleep(0.001) end end
]]
local function body(src) return TPRE .. src end

-- A thread that stores 1 in ud[0] when it runs, then waits until ud[1] is set.
local BLOCKED = body [[
local p = ffi.cast("int *", ud)
T.ljt_atomic_store(p, 1)
wait_for(p + 1, 1)
]]

-- The OS threads of this process (not /proc/self: that would be ls's own).
ffi.cdef "int getpid(void);"
local function tasks() local n = 0; for _ in io.popen("ls /proc/" .. ffi.C.getpid() .. "/task"):lines() do n = n + 1 end; return n end

describe("lj-async.thread", function()
  local live0
  before_each(function()
    assert.is_true(eventually(function() return Thread.live() == (live0 or Thread.live()) end))
    live0 = Thread.live()
  end)
  after_each(function()
    collectgarbage(); collectgarbage()
    assert.is_true(eventually(function() return Thread.live() == live0 end), "thread objects leaked")
  end)

  describe("the seed's API", function()
    it("Thread.new(func, ud) runs func(ud) on another OS thread; join returns true", function()
      local out = ffi.new("int[3]")
      local t = Thread.new(function(ud)
        local ffi = require "ffi"
        local p = ffi.cast("int *", ud)
        p[0] = ffi.istype("void *", ud) and 1 or 2
        p[1] = require("lj-async.thread").id()
        p[2] = 42
        return 0
      end, out)
      assert.is_true(t:join())
      assert.same({ 1, 42 }, { out[0], out[2] })
      assert.not_equal(Thread.id(), out[1])
      assert.equal("done", t:status())
      t:destroy()
    end)

    it("Thread(func, ud) is the same", function()
      local out = ffi.new("int[1]")
      local t = Thread(function(ud) require("ffi").cast("int *", ud)[0] = 7 end, out)
      assert.is_true(t:join())
      assert.equal(7, out[0])
      t:free()
    end)

    it("takes source text (its ... is ud) and bytecode", function()
      local out = ffi.new("int[2]")
      local t1 = Thread.new("local ud = ...; require('ffi').cast('int *', ud)[0] = 11", out)
      local code = string.dump(function(ud) require("ffi").cast("int *", ud)[1] = 12 end)
      local t2 = Thread.new(code, out)
      assert.is_true(t1:join(10)); assert.is_true(t2:join(10))
      assert.same({ 11, 12 }, { out[0], out[1] })
      t1:destroy(); t2:destroy()
    end)

    it("passes ud as void*: pointer cdata, address number, lightuserdata or nil", function()
      local got = ffi.new("int64_t[4]")
      local report = body(([[
        ffi.cast("int64_t *", %d)[%%d] = type(ud) ~= "cdata" and -1 or (ud == nil and -2 or tonumber(ffi.cast("intptr_t", ud)))
        assert(ffi.istype("void *", ud))
      ]]):format(tonumber(ffi.cast("intptr_t", got))))
      local mem = ffi.new("char[8]")
      local lud = debug.upvalueid(function() return mem end, 1)  -- a lightuserdata
      local cases = { { mem, tonumber(ffi.cast("intptr_t", mem)) },
                      { tonumber(ffi.cast("intptr_t", mem)) + 1, tonumber(ffi.cast("intptr_t", mem)) + 1 },
                      { lud, tonumber(ffi.cast("intptr_t", ffi.cast("void *", lud))) },
                      { nil, -2 } }
      for i, c in ipairs(cases) do
        local t = Thread.new(report:format(i - 1), c[1])
        assert.is_true(t:join(10))
        assert.is_nil(t:error())
        assert.equal(c[2], tonumber(got[i - 1]))
        t:destroy()
      end
    end)

    it("runs 16 threads at once, each with its own ud", function()
      pcall(ffi.cdef, "struct ljt_slot { int index; int result; int *counter; };")
      local slots = ffi.new("struct ljt_slot[16]")
      local counter = ffi.new("int[1]")
      local ts_ = {}
      for i = 0, 15 do
        slots[i].index, slots[i].counter = i, counter
        ts_[i] = Thread.new(body [[
          ffi.cdef "struct ljt_slot { int index; int result; int *counter; };"
          local s = ffi.cast("struct ljt_slot *", ud)
          T.ljt_atomic_add(s.counter, 1)
          wait_for(s.counter, 16)   -- only returns if all 16 run at the same time
          s.result = s.index * s.index + 1
        ]], slots + i)
      end
      for i = 0, 15 do
        assert.is_true(ts_[i]:join(30))
        assert.is_nil(ts_[i]:error())
        ts_[i]:destroy()
      end
      for i = 0, 15 do assert.equal(i * i + 1, slots[i].result) end
    end)
  end)

  describe("upvalues", function()
    it("Thread.new copies them by value, a loaded module crossing as require (seed 002's example)", function()
      local out = ffi.new("int[2]")
      local base, t = 40, { 2 }
      local h = Thread.new(function(userdata)
        userdata = ffi.cast("int *", userdata)  -- ffi is an upvalue: it crosses as require "ffi"
        userdata[0] = base + t[1]
        userdata[1] = ffi.istype("void *", ffi.cast("void *", userdata)) and 1 or 0
      end, out)
      assert.is_true(h:join(10))
      assert.equal(nil, h:error())
      assert.same({ 42, 1 }, { out[0], out[1] })
      h:destroy()
      local seen = ffi.new("int[2]", -1, -1)
      local copy = seen  -- an array: the thread gets a copy of it
      local p = ffi.cast("int *", seen)  -- a pointer: crosses as its address
      local none = Thread(function(ud)
        copy[0] = 5
        p[1] = ud == nil and ffi.istype("void *", ud) and 1 or 0  -- a nil ud arrives as a NULL void *
      end)
      assert.is_true(none:join(10))
      assert.equal(nil, none:error())
      assert.same({ -1, 1 }, { seen[0], seen[1] })
      none:destroy()
    end)

    it("Thread.spawn copies them with the arguments; results come back, mutations do not", function()
      local t = { n = 1 }
      local insert = table.insert  -- a C function of a loaded module: crosses as table.insert there
      local h = Thread.spawn(function(a, b)
        t.n = t.n + a
        local list = {}
        insert(list, b)
        return t.n, list[1], package.loaded["lj-async.encoder"] ~= nil
      end, 10, "x")
      assert.same({ n = 4, true, 11, "x", true }, H.pack(h:join(10)))
      assert.equal(1, t.n)  -- the thread changed its copy
      h:destroy()
      local k = 5
      h = Thread.spawn_named("with upvalues", function() return k end)
      assert.same({ n = 2, true, 5 }, H.pack(h:join(10)))
      h:destroy()
    end)

    it("errors in a function with upvalues name its own chunk and line", function()
      local what = "upvalue failure"
      local h = Thread.spawn(function() error(what) end)
      h:join(10)
      assert.equal("failed", h:status())
      assert.matches("thread_spec.lua:%d+: upvalue failure\nstack traceback:", h:error())
      h:destroy()
    end)

    it("an upvalue-free function does not load the encoder into the thread's state", function()
      local out = ffi.new("int[1]", -1)
      local h = Thread.new(function(ud)
        require("ffi").cast("int *", ud)[0] = package.loaded["lj-async.encoder"] == nil and 1 or 0
      end, out)
      assert.is_true(h:join(10))
      assert.equal(1, out[0])
      h:destroy()
      h = Thread.spawn(function() return package.loaded["lj-async.encoder"] == nil end)
      assert.same({ n = 2, true, true }, H.pack(h:join(10)))  -- the results bring it in after the call
      h:destroy()
    end)
  end)

  describe("join", function()
    it("honours timeouts: 0 polls, n seconds waits about n, without busy waiting", function()
      local sig = ffi.new("int[2]")
      local t = Thread.new(BLOCKED, sig)
      assert.is_true(eventually(function() return T.ljt_atomic_load(sig) == 1 end))
      local w0 = now()
      assert.is_false(t:join(0))
      assert.is_true(now() - w0 < 0.5)
      local c0 = thread_cpu()
      w0 = now()
      assert.is_false(t:join(0.3))
      local waited, cpu = now() - w0, thread_cpu() - c0
      assert.is_true(waited >= 0.29 and waited < 3, "waited " .. waited)
      assert.is_true(cpu < 0.05, "joining used " .. cpu .. " s of CPU")
      assert.equal("running", t:status())
      T.ljt_atomic_store(sig + 1, 1)
      assert.is_true(t:join(10))
      assert.is_true(t:join(0))   -- again: still true
      assert.equal("done", t:status())
      t:destroy()
    end)

    it("without a timeout blocks until the thread ends", function()
      local sig = ffi.new("int[2]")
      local t = Thread.new(BLOCKED, sig)
      local releaser = Thread.new(body [[
        Thread.sleep(0.2)
        T.ljt_atomic_store(ffi.cast("int *", ud) + 1, 1)
      ]], sig)
      local w0 = now()
      assert.is_true(t:join())
      assert.is_true(now() - w0 >= 0.15)
      assert.is_true(releaser:join(10))
      t:destroy(); releaser:destroy()
    end)

    it("refuses bad timeouts", function()
      local t = Thread.new(function() end)
      assert.has_error(function() t:join(-1) end, "bad argument #1 to 'join': expected nil or seconds >= 0, got -1")
      assert.has_error(function() t:join("1") end, "bad argument #1 to 'join': expected nil or seconds >= 0, got 1")
      assert.has_error(function() t:join(0/0) end)
      assert.is_true(t:join(10))
      t:destroy()
    end)
  end)

  describe("bad input", function()
    it("refuses upvalues that cannot move with the encoder's text, naming the upvalue", function()
      local co = coroutine.create(function() end)
      assert.has_error(function() Thread.new(function() return co end) end,
        "bad thread function: upvalue 'co': cannot move a coroutine")
      assert.has_error(function() Thread(function() return co end) end,
        "bad thread function: upvalue 'co': cannot move a coroutine")
      assert.has_error(function() Thread.spawn(function() return co end, 1) end,
        "bad thread function: upvalue 'co': cannot move a coroutine")
      local k = 1
      assert.has_error(function() Thread.spawn(function(x) return x + k end, 1, co) end,
        "bad argument to spawn: argument 2: cannot move a coroutine")  -- arguments count as without upvalues
      local ok, err = pcall(function() Thread.new(function() return co end) end)
      assert.matches("thread_spec%.lua:%d+: bad thread function", err)
    end)

    it("refuses other values, broken source and bad ud or options", function()
      assert.has_error(function() Thread.new(42) end,
        "bad thread function: expected a function, Lua source or bytecode, got number")
      assert.has_error(function() Thread.new("return +") end)
      local ok, err = pcall(Thread.new, "return +")
      assert.matches("^bad thread function: lj%-async thread:1:", err)
      ok, err = pcall(Thread.new, "return +", nil, { name = "named" })
      assert.matches("^bad thread function: named:1:", err)
      assert.has_error(function() Thread.new(function() end, {}) end,
        "bad userdata: expected a pointer cdata, lightuserdata, an address or nil, got table")
      assert.has_error(function() Thread.new(function() end, "text") end,
        "bad userdata: expected a pointer cdata, lightuserdata, an address or nil, got string")
      assert.has_error(function() Thread.new(function() end, nil, { name = 5 }) end, "bad option 'name': expected a string, got number")
      assert.has_error(function() Thread.new(function() end, nil, "x") end, "bad options: expected a table")
      assert.has_error(function() Thread.sleep(-1) end, "bad argument #1 to 'sleep': expected seconds >= 0, got -1")
    end)

    it("reports where the misuse is", function()
      local ok, err = pcall(function() Thread.new(1) end)
      assert.matches("thread_spec.lua:%d+: bad thread function", err)
    end)
  end)

  describe("errors", function()
    it("a state whose init code fails fails the thread with the reason (the function does not run)", function()
      local core = require "lj-async.core"
      finally(function() core.add_init("", "=spec: raising thread init") end)  -- replaced by name
      core.add_init("error('spec: broken init code')", "=spec: raising thread init")
      local ran = require("lj-async.sync").channel()
      local t = Thread.spawn(function(c) c:push("ran") end, ran)
      assert.is_true(t:join(10))
      assert.equal("failed", t:status())
      assert.matches("the thread's Lua state cannot start: init code .-spec: broken init code", t:error())
      assert.is_nil(ran:pop(0))
      t:destroy()
      core.add_init("", "=spec: raising thread init")
      assert.same({ true, 7 }, { Thread.spawn(function() return 7 end):join(10) })
    end)

    it("reach error() with their traceback; join still returns true", function()
      local t = Thread.new(function()
        local x = nil
        return x.field
      end)
      assert.is_true(t:join(10))
      assert.equal("failed", t:status())
      local e = t:error()
      assert.matches("thread_spec.lua:%d+: attempt to index", e)
      assert.matches("stack traceback:", e)
      assert.equal(e, t:error())  -- readable again
      t:destroy()
    end)

    it("keep error objects' __tostring, and name other error values", function()
      local t1 = Thread.new(function() error(setmetatable({}, { __tostring = function() return "custom" end })) end)
      local t2 = Thread.new(function() error({}) end)
      assert.is_true(t1:join(10)); assert.is_true(t2:join(10))
      assert.matches("^custom\nstack traceback:", t1:error())
      assert.equal("(error object is a table value)", t2:error())
      t1:destroy(); t2:destroy()
    end)

    it("are long if need be", function()
      local t = Thread.new(function() error(string.rep("x", 10000)) end)
      assert.is_true(t:join(10))
      assert.is_true(#t:error() > 10000)
      t:destroy()
    end)

    it("nobody read go to stderr when the handle is destroyed or collected", function()
      local out = H.capture_stderr(function()
        local t = Thread.new(function() error("nobody reads this") end, nil, { name = "unread" })
        assert.is_true(t:join(10))
        t:destroy()
        do
          local t2 = Thread.new(function() error("collected unread") end)
          assert.is_true(t2:join(10))
        end
        collectgarbage(); collectgarbage()
      end)
      assert.matches("lj%-async: error in thread 'unread' %(never read%): [^\n]*nobody reads this\nstack traceback:", out)
      assert.matches("collected unread", out)
    end)

    it("asked for while the thread runs are still reported if it fails later", function()
      local sig = ffi.new("int[2]")
      local out = H.capture_stderr(function()
        local t = Thread.new(BLOCKED .. "\nerror('after the question')", sig)
        assert.is_nil(t:error())
        T.ljt_atomic_store(sig + 1, 1)
        assert.is_true(t:join(10))
        t:destroy()
      end)
      assert.matches("never read%): [^\n]*after the question", out)
    end)

    it("that were read are not reported again", function()
      local out = H.capture_stderr(function()
        local t = Thread.new(function() error("read it") end)
        assert.is_true(t:join(10))
        assert.matches("read it", t:error())
        t:destroy()
      end)
      assert.equal("", out)
    end)

    it("of a detached thread go to stderr when it ends", function()
      local sig = ffi.new("int[2]")
      local out = H.capture_stderr(function()
        local t = Thread.new(BLOCKED .. "\nerror('late failure')", sig, { name = "late" })
        assert.is_true(eventually(function() return T.ljt_atomic_load(sig) == 1 end))
        t:destroy()  -- detaches
        T.ljt_atomic_store(sig + 1, 1)
        assert.is_true(eventually(function() return Thread.live() == live0 end))
      end)
      assert.matches("error in thread 'late' %(detached%): [^\n]*late failure", out)
    end)
  end)

  describe("handles", function()
    it("destroy() twice is fine; other methods then refuse", function()
      local t = Thread.new(function() end)
      assert.is_true(t:join(10))
      t:destroy(); t:destroy()
      assert.has_error(function() t:join() end, "thread has been destroyed")
      assert.has_error(function() t:status() end, "thread has been destroyed")
      assert.has_error(function() t:cancel() end, "thread has been destroyed")
      assert.matches("destroyed", tostring(t))
    end)

    it("destroy() on a running thread detaches it: it runs to its end, then frees itself", function()
      local sig = ffi.new("int[3]")
      local t = Thread.new(BLOCKED .. "\nT.ljt_atomic_store(ffi.cast('int *', ud) + 2, 1)", sig)
      assert.is_true(eventually(function() return T.ljt_atomic_load(sig) == 1 end))
      t:destroy()
      assert.equal(live0 + 1, Thread.live())  -- still running
      T.ljt_atomic_store(sig + 1, 1)
      assert.is_true(eventually(function() return T.ljt_atomic_load(sig + 2) == 1 end))
      assert.is_true(eventually(function() return Thread.live() == live0 end))
    end)

    it("a handle collected while its thread runs detaches it, and the thread frees everything", function()
      local sig = ffi.new("int[3]")
      do
        local t = Thread.new(BLOCKED .. "\nT.ljt_atomic_store(ffi.cast('int *', ud) + 2, 1)", sig)
        assert.is_true(eventually(function() return T.ljt_atomic_load(sig) == 1 end))
      end
      collectgarbage(); collectgarbage()
      assert.equal(live0 + 1, Thread.live())
      T.ljt_atomic_store(sig + 1, 1)
      assert.is_true(eventually(function() return T.ljt_atomic_load(sig + 2) == 1 end))
      assert.is_true(eventually(function() return Thread.live() == live0 end))
    end)

    it("print their name and status", function()
      local t = Thread.new(function() end, nil, { name = "shown" })
      assert.is_true(t:join(10))
      assert.equal("lj-async.thread<shown> (done)", tostring(t))
      t:destroy()
    end)
  end)

  describe("cancellation", function()
    it("stops a JIT-compiled loop that polls Thread.cancelled()", function()
      local out = ffi.new("int[4]")
      local t = Thread.new(body [[
        local out = ffi.cast("int *", ud)
        local function on_trace(what)
          if what == "stop" then T.ljt_atomic_add(out, 1) elseif what == "abort" then out[1] = out[1] + 1 end
        end
        jit.attach(on_trace, "trace")
        local n = 0
        for i = 1, 1e12 do
          if Thread.cancelled() then n = i; break end
        end
        jit.attach(on_trace)
        out[2] = n > 100 and 1 or 0
      ]], out)
      -- Cancel only once a trace for the loop exists, so compiled code must see the flag.
      assert.is_true(eventually(function() return T.ljt_atomic_load(out) >= 1 end))
      t:cancel()
      assert.is_true(t:join(10))
      assert.equal("done", t:status())   -- it returned by itself
      assert.same({ 0, 1 }, { out[1], out[2] })
      t:destroy()
    end)

    it("check_cancel() raises; join reports 'cancelled', not an error on stderr", function()
      local out = H.capture_stderr(function()
        local t = Thread.new(function()
          local Thread = require "lj-async.thread"
          while true do Thread.check_cancel(); Thread.sleep(0.001) end
        end)
        assert.is_false(t:join(0.05))
        t:cancel()
        assert.is_true(t:join(10))
        assert.equal("cancelled", t:status())
        t:destroy()
        local t2 = Thread.new(function()
          local Thread = require "lj-async.thread"
          while true do Thread.check_cancel(); Thread.sleep(0.001) end
        end)
        t2:cancel()
        assert.is_true(t2:join(10))
        assert.equal("cancelled", t2:error())
        t2:destroy()
      end)
      assert.equal("", out)
    end)

    it("wakes an endless Thread.sleep; join(math.huge) is join()", function()
      local out = ffi.new("int[2]")
      local t = Thread.new(body [[
        local out = ffi.cast("int *", ud)
        T.ljt_atomic_store(out, 1)
        out[1] = Thread.sleep(math.huge) and 1 or 2
      ]], out)
      assert.is_true(eventually(function() return T.ljt_atomic_load(out) == 1 end))
      assert.is_false(t:join(0.01))
      t:cancel()
      assert.is_true(t:join(math.huge))
      assert.equal(2, out[1])
      t:destroy()
    end)

    it("wakes Thread.sleep in the thread, which then returns false", function()
      local out = ffi.new("int[2]")
      local t = Thread.new(body [[
        local out = ffi.cast("int *", ud)
        T.ljt_atomic_store(out, 1)
        out[1] = Thread.sleep(1000) and 1 or 2
      ]], out)
      assert.is_true(eventually(function() return T.ljt_atomic_load(out) == 1 end))
      local w0 = now()
      t:cancel()
      assert.is_true(t:join(10))
      assert.is_true(now() - w0 < 5)
      assert.equal(2, out[1])
      t:destroy()
    end)

    it("is never set outside a thread, and cancelled() compiles there too", function()
      assert.is_false(Thread.cancelled())
      assert.has_no.errors(Thread.check_cancel)
      local stops, aborts = 0, {}
      local function on_trace(what, tr, func, pc, otr, oex)
        if what == "stop" then stops = stops + 1
        elseif what == "abort" then aborts[#aborts + 1] = tostring(otr) .. " " .. tostring(oex) end
      end
      jit.flush()
      jit.attach(on_trace, "trace")
      local cancelled, n = Thread.cancelled, 0
      for _ = 1, 1000 do if cancelled() then n = n + 1 end end
      jit.attach(on_trace)
      assert.equal(0, n)
      assert.same({}, aborts)
      assert.is_true(stops >= 1)
    end)
  end)

  describe("names and helpers", function()
    local function comm(tid)
      local f = io.open("/proc/self/task/" .. tid .. "/comm")
      local s = f:read("*l"); f:close()
      return s
    end
    local NAMED = body [[
      local p = ffi.cast("int *", ud)
      p[2] = Thread.id()
      T.ljt_atomic_store(p, 1)
      wait_for(p + 1, 1)
    ]]

    it("names threads (visible in /proc/self/task/*/comm, truncated to 15 bytes)", function()
      for _, c in ipairs { { { name = "worker-seven" }, "worker-seven" },
                           { { name = "a-very-long-thread-name" }, "a-very-long-thr" },
                           { nil, "lj-async thread" } } do
        local sig = ffi.new("int[3]")
        local t = Thread.new(NAMED, sig, c[1])
        assert.is_true(eventually(function() return T.ljt_atomic_load(sig) == 1 end))
        assert.equal(c[2], comm(sig[2]))
        T.ljt_atomic_store(sig + 1, 1)
        assert.is_true(t:join(10))
        t:destroy()
      end
    end)

    -- The thread's own stack size, as glibc reports it (pthread_getattr_np).
    local STACK = body [[
      ffi.cdef "typedef struct { char b[64]; } ljt_attr; unsigned long pthread_self(void); int pthread_getattr_np(unsigned long, ljt_attr *); int pthread_attr_getstacksize(const ljt_attr *, size_t *); int pthread_attr_destroy(ljt_attr *);"
      local a, n = ffi.new("ljt_attr"), ffi.new("size_t[1]")
      assert(ffi.C.pthread_getattr_np(ffi.C.pthread_self(), a) == 0)
      ffi.C.pthread_attr_getstacksize(a, n)
      ffi.C.pthread_attr_destroy(a)
      ffi.cast("int *", ud)[0] = tonumber(n[0]) / 1024
    ]]

    it("runs threads on a 256 KiB stack unless opts.stack_size asks for another", function()
      -- glibc may hand out a cached stack of up to 4 times the size asked for; never its 8 MiB
      -- default (nothing in this process asks for 8 MiB stacks but the pool's workers).
      for _, c in ipairs { { nil, 256 }, { { stack_size = 2 * 1024 * 1024 }, 2048 } } do
        local out = ffi.new("int[1]")
        local t = Thread.new(STACK, out, c[1])
        assert.is_true(t:join(10))
        assert.equal(nil, t:error())
        assert.is_true(out[0] >= c[2] and out[0] < 8192, "stack of " .. out[0] .. " KiB")
        t:destroy()
      end
      for _, bad in ipairs { 1000, 65535, 1.5e5 + 0.5, "big", -1 } do
        local ok, err = pcall(Thread.new, function() end, nil, { stack_size = bad })
        assert.is_false(ok)
        assert.matches("^bad option 'stack_size': expected a whole number of bytes >= 65536, got " .. tostring(bad):gsub("%p", "%%%0"), err)
      end
    end)

    it("the default stack holds LuaJIT's deepest recursion: the parser at its nesting limit", function()
      -- 195 nested table constructors and 195 nested parentheses (LuaJIT stops at 200 levels),
      -- then __index recursing through C until LuaJIT raises its own stack overflow error.
      local t = Thread.spawn(function()
        local tables = loadstring("return " .. string.rep("{", 195) .. string.rep("}", 195))
        local parens = loadstring("return " .. string.rep("(", 195) .. "1" .. string.rep(")", 195))
        local deep = setmetatable({}, { __index = function(t, k) return t[k + 1] end })
        local ok, err = pcall(function() return deep[1] end)
        return type(tables()) == "table", parens(), ok, tostring(err):match("stack overflow")
      end)
      assert.same({ n = 5, true, true, 1, false, "stack overflow" }, H.pack(t:join(30)))
      t:destroy()
    end)

    it("a function without parameters runs without ud; one with `...` gets it", function()
      local out = ffi.new("int[2]")
      local t = Thread.new(function(...)
        local ud = ...
        require("ffi").cast("int *", ud)[0] = select("#", ...) == 1 and require("ffi").istype("void *", ud) and 1 or 2
      end, out)
      assert.is_true(t:join(10))
      assert.equal(nil, t:error())
      assert.equal(1, out[0])
      t:destroy()
      t = Thread.new(function() local x = 1 + 1; assert(x == 2) end, out)
      assert.is_true(t:join(10))
      assert.equal(nil, t:error())
      assert.equal("done", t:status())
      t:destroy()
    end)

    it("sleep, yield, cpus, id", function()
      local w0 = now()
      assert.is_true(Thread.sleep(0.05))
      local slept = now() - w0
      assert.is_true(slept >= 0.049 and slept < 2, "slept " .. slept)
      assert.is_true(Thread.sleep(0))
      Thread.yield()
      local n = Thread.cpus()
      assert.is_true(n >= 1 and n == math.floor(n))
      assert.is_truthy(io.open("/proc/self/task/" .. Thread.id() .. "/comm"))
    end)

    it("threads can start threads", function()
      local out = ffi.new("int[1]")
      local t = Thread.new(function(ud)
        local Thread = require "lj-async.thread"
        local inner = Thread.new(function(p) require("ffi").cast("int *", p)[0] = 99 end, ud)
        assert(inner:join(10))
        inner:destroy()
      end, out)
      assert.is_true(t:join(10))
      assert.is_nil(t:error())
      assert.equal(99, out[0])
      t:destroy()
    end)
  end)

  describe("Thread.spawn", function()
    it("passes copies of its arguments; join returns true and the results, nils kept", function()
      local h = Thread.spawn(function(a, b, c) return c, nil, a + b end, 1, 2, "x")
      local r = H.pack(h:join(10))
      assert.same({ n = 4, true, "x", nil, 3 }, r)
      assert.same(r, H.pack(h:join()))   -- again, the same
      assert.equal("done", h:status())
      h:destroy()
    end)

    it("copies tables both ways and keeps argument counts", function()
      local t = { 1, 2, k = { "deep" } }
      local h = Thread.spawn(function(t, ...)
        t.k[1] = "changed there"
        return t, select("#", ...), { new = true }
      end, t, nil, nil)
      local ok, back, nils, new = h:join(10)
      assert.is_true(ok)
      assert.equal("deep", t.k[1])
      assert.same({ 1, 2, k = { "changed there" } }, back)
      assert.equal(2, nils)
      assert.same({ new = true }, new)
      h:destroy()
    end)

    it("with no arguments and no results joins to just true", function()
      local h = Thread.spawn(function() end)
      assert.same({ n = 1, true }, H.pack(h:join(10)))
      h:destroy()
    end)

    it("reports failures through error(); join returns true alone", function()
      local h = Thread.spawn(function(x) error("spawned " .. x) end, "failure")
      assert.same({ n = 1, true }, H.pack(h:join(10)))
      assert.equal("failed", h:status())
      assert.matches("thread_spec.lua:%d+: spawned failure\nstack traceback:", h:error())
      h:destroy()
    end)

    it("returns false alone on timeout", function()
      local sig = ffi.new("int[2]")
      local h = Thread.spawn(function(addr)
        local ffi = require "ffi"
        local Thread = require "lj-async.thread"
        local p = ffi.cast("volatile int *", addr)
        while p[1] == 0 do Thread.sleep(0.001) end
        return "released"
      end, tonumber(ffi.cast("intptr_t", sig)))
      assert.same({ n = 1, false }, H.pack(h:join(0.05)))
      sig[1] = 1
      assert.same({ n = 2, true, "released" }, H.pack(h:join(10)))
      h:destroy()
    end)

    it("refuses arguments that cannot cross, naming them, before starting anything", function()
      local live = Thread.live()
      local ok, err = pcall(function() Thread.spawn(function() end, 1, coroutine.create(print)) end)
      assert.is_false(ok)
      assert.matches("thread_spec.lua:%d+: bad argument to spawn: argument 2: ", err)
      assert.equal(live, Thread.live())
    end)

    it("fails the thread when a result cannot cross", function()
      local h = Thread.spawn(function() return coroutine.create(print) end)
      assert.is_true(h:join(10))
      assert.equal("failed", h:status())
      assert.matches("coroutine", h:error())
      h:destroy()
    end)

    it("spawn_named names the thread; check_cancel works there too", function()
      local h = Thread.spawn_named("spawned-one", function()
        local Thread = require "lj-async.thread"
        local f = io.open("/proc/self/task/" .. Thread.id() .. "/comm")
        local name = f:read("*l"); f:close()
        while true do Thread.check_cancel(); Thread.sleep(0.001) end
        return name
      end)
      h:cancel()
      assert.same({ n = 1, true }, H.pack(h:join(10)))
      assert.equal("cancelled", h:status())
      h:destroy()
      local h2 = Thread.spawn_named("spawned-two", function()
        local Thread = require "lj-async.thread"
        local f = io.open("/proc/self/task/" .. Thread.id() .. "/comm")
        local name = f:read("*l"); f:close()
        return name
      end)
      assert.same({ n = 2, true, "spawned-two" }, H.pack(h2:join(10)))
      h2:destroy()
      assert.has_error(function() Thread.spawn_named(1, function() end) end,
        "bad argument #1 to 'spawn_named': expected a name string")
    end)

    it("passes shared objects by reference and releases every reference it took", function()
      local TO = require "spec.support.testobject"
      local base = TO.live()
      do
        local obj = TO.new(77)
        local h = Thread.spawn(function(o)
          local TO = require "spec.support.testobject"
          return TO.value(o), o
        end, obj)
        local ok, v, back = h:join(10)
        assert.is_true(ok)
        assert.equal(77, v)
        assert.equal(77, TO.value(back))
        h:destroy()
        TO.close(obj); TO.close(back)
        -- A spawn whose handle goes without a join: its argument and result messages are freed.
        local five = TO.new(5)
        local h2 = Thread.spawn(function(o) return o end, five)
        assert.is_true(h2:join(10))
        h2:destroy()   -- drops the decoded result too
        TO.close(five)
      end
      collectgarbage(); collectgarbage()
      assert.is_true(eventually(function() collectgarbage(); return TO.live() == base end), "shared objects leaked")
    end)

    it("frees results nobody joined for", function()
      for _ = 1, 50 do
        local h = Thread.spawn(function() return { string.rep("x", 1000) } end)
        h:destroy()
      end
      assert.is_true(eventually(function() return Thread.live() == live0 end))
    end)
  end)

  describe("resources", function()
    local function run_script(src)
      local script = os.tmpname()
      local f = io.open(script, "w")
      f:write('package.path = "./lua/?.lua;" .. package.path\n', src)
      f:close()
      local p = io.popen("luajit " .. script .. " 2>&1; echo \" exit $?\"")
      local out = p:read("*a"); p:close()
      os.remove(script)
      return out
    end

    it("a state whose init code removed ffi fails the thread instead of the process", function()
      -- A function without parameters cannot see ud: it is called without it, so no ffi is needed.
      assert.equal("failed: cannot pass the userdata: ffi.cast is not available in the thread's state; done exit 0\n", run_script [=[
        local Thread = require "lj-async.thread"
        require("lj-async.callback").add_init("package.loaded.ffi = nil; package.preload.ffi = nil", "=no ffi")
        local t = Thread.new(function(ud) end, 1234)
        assert(t:join(10))
        local blind = Thread.new(function() end, 1234)
        assert(blind:join(10))
        io.write(t:status(), ": ", t:error(), "; ", blind:status())
      ]=])
    end)

    it("states whose init code dropped a loaded ffi close cleanly (this LuaJIT's lua_close used its freed tables)", function()
      assert.equal("done done exit 0\n", run_script [=[
        local Thread = require "lj-async.thread"
        require("lj-async.callback").add_init("require 'ffi'; package.loaded.ffi = nil; collectgarbage(); collectgarbage()", "=drop ffi")
        local out = {}
        for i = 1, 2 do
          local ts = {}
          for j = 1, 20 do ts[j] = Thread.new(function(ud) local ffi = require "ffi"; assert(ffi.cast("intptr_t", ud) == 1234) end, 1234) end
          for j = 1, 20 do assert(ts[j]:join(10)); assert(ts[j]:status() == "done", ts[j]:error()); ts[j]:destroy() end
          out[i] = "done"
        end
        io.write(table.concat(out, " "))
      ]=])
    end)

    it("the process exits cleanly while threads still run (the core stays loaded)", function()
      local script = os.tmpname()
      local f = io.open(script, "w")
      f:write([=[
        package.path = "./lua/?.lua;" .. package.path
        local Thread = require "lj-async.thread"
        local keep = {}
        for i = 1, 3 do keep[i] = Thread.new(function() local x = 0; while true do x = x + 1; local t = { x } end end) end
        keep[4] = Thread.new(function()
          local Thread = require "lj-async.thread"
          while true do local t = Thread.new(function() end); t:join(); t:destroy() end
        end)
        Thread.new(function() local Thread = require "lj-async.thread"; while true do Thread.sleep(0.0001) end end)
        Thread.sleep(0.02)
      ]=])
      f:close()
      for _ = 1, 10 do
        local ok, how, code = os.execute("luajit " .. script .. " 2>&1")
        assert.is_true(ok == true or ok == 0, ("exit: %s %s"):format(tostring(how), tostring(code)))
      end
      os.remove(script)
    end)

    local function rss_kb()
      local f = io.open("/proc/self/statm"); local s = f:read("*l"); f:close()
      return tonumber(s:match("^%d+%s+(%d+)")) * 4
    end

    it("a thread's pthread runs the next thread once it ended, and idle pthreads exit within seconds", function()
      local ids, seen, shared = ffi.new("int[20]"), {}, false
      for i = 0, 19 do
        local t = Thread.new(function(ud) require("ffi").cast("int *", ud)[0] = require("lj-async.thread").id() end, ids + i)
        assert.is_true(t:join(10))
        t:destroy()
        if seen[ids[i]] then shared = true end
        seen[ids[i]] = true
        Thread.sleep(0.01)  -- its pthread parks meanwhile
      end
      assert.is_true(shared, "every thread had a pthread of its own")
      -- In a fresh process: 8 at once leave 8 parked pthreads, which end after a second idle
      -- (leaving the main thread and the state preparer).
      local out = run_script [=[
        local Thread = require "lj-async.thread"
        local ffi = require "ffi"
        ffi.cdef "int getpid(void);"
        local function tasks() local n = 0; for _ in io.popen("ls /proc/" .. ffi.C.getpid() .. "/task"):lines() do n = n + 1 end; return n end
        local hs = {}
        for i = 1, 8 do hs[i] = Thread.new("require('lj-async.thread').sleep(0.2)") end
        for i = 1, 8 do assert(hs[i]:join(10)); hs[i]:destroy() end
        local parked, t0 = tasks(), os.time()
        while tasks() > 2 and os.time() - t0 < 10 do Thread.sleep(0.01) end
        io.write(parked >= 8 and "parked " or "not parked ", tasks())
      ]=]
      assert.equal("parked 2 exit 0\n", out)
    end)

    it("1000 threads in sequence leak no OS threads, thread objects, states or memory", function()
      local f = function() local t = {}; for i = 1, 100 do t[i] = i end; return 0 end
      for _ = 1, 200 do local t = Thread.new(f); assert(t:join(10)); t:destroy() end  -- warm-up
      collectgarbage(); collectgarbage()
      local tasks0 = tasks()
      assert.is_true(eventually(function() return Thread.live() == live0 end))
      local rss0 = rss_kb()
      for _ = 1, 1000 do
        local t = Thread.new(f)
        assert(t:join(10))
        t:destroy()
      end
      collectgarbage(); collectgarbage()
      assert.is_true(eventually(function() return Thread.live() == live0 end), "thread objects leaked")
      assert.is_true(eventually(function() return tasks() <= tasks0 end), "OS threads leaked: " .. tasks() .. " > " .. tasks0)
      -- Each thread's state holds ~100 KB: 1000 leaked states would be ~100 MB.
      local grown = rss_kb() - rss0
      assert.is_true(grown < 16 * 1024, "RSS grew by " .. grown .. " KB")
    end)
  end)
end)

describe("one CPU count", function()
  -- Under `taskset -c 0` the process may run on one CPU: Thread.cpus(), the pool's default
  -- maximum of workers and a callback's states = "parallel" all say 1 (the affinity mask),
  -- not the CPUs online.
  it("is the affinity mask, for threads, pool and callbacks alike", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([=[
      package.path = "./lua/?.lua;" .. package.path
      local ffi = require "ffi"
      local Thread = require "lj-async.thread"
      local pool = require "lj-async.pool"
      local CallbackFactory = require "lj-async.callback"
      ffi.cdef "double ljt_call_threads(void *fp, int nthreads, int calls, long long *sums);"
      local T = ffi.load(os.getenv("LJASYNC_TESTC"))
      -- Each call sleeps, so 8 callers overlap and the callback grows to as many states as
      -- "parallel" allows.
      local cb = CallbackFactory("int(*)(int)")(function(x)
        require("ffi").C.usleep(2000)
        return x
      end, { states = "parallel", cdef = "int usleep(unsigned int);" })
      local sums = ffi.new("long long[8]")
      assert(T.ljt_call_threads(cb:funcptr(), 8, 10, sums) >= 0)
      io.write(("%d %d %d %d"):format(Thread.cpus(), pool.cpu_count(), pool.configure().max_workers, cb:states()))
      cb:free()
    ]=])
    f:close()
    local p = assert(io.popen("taskset -c 0 luajit " .. script .. " 2>&1"))
    local out = p:read("*a"); p:close()
    os.remove(script)
    assert.equal("1 1 1 1", out)
  end)
end)
