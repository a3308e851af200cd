-- Test helper: OS threads running Lua functions in their own states, before lj-async.thread
-- exists. A lj-async callback `void *(*)(void *)` started with pthread_create runs the function
-- (passed as bytecode with its arguments in an encoder message); its results (or its error)
-- come back through pthread_join as another message.
local ffi = require "ffi"
local core = require "lj-async.core"
local encoder = require "lj-async.encoder"
local CallbackFactory = require "lj-async.callback"

local T = {}

if not pcall(ffi.typeof, "ljt_pthread_t") then
  ffi.cdef [[
  typedef unsigned long ljt_pthread_t;
  int pthread_create(ljt_pthread_t *t, const void *attr, void *(*fn)(void *), void *arg);
  int pthread_join(ljt_pthread_t t, void **ret);
  int usleep(unsigned int us);
  struct ljt_timespec { long tv_sec; long tv_nsec; };
  int clock_gettime(int clk, struct ljt_timespec *ts);
  ]]
end

-- Runs in the thread's state: decodes (bytecode, args...), calls, encodes (ok, results...).
-- Collects garbage before returning so handles the function dropped are released now,
-- not whenever this (reused) callback state next collects.
local function trampoline(arg)
  local ffi = require "ffi"
  local encoder = require "lj-async.encoder"
  local function pack(...) return { n = select("#", ...), ... } end
  local a = pack(encoder.decode_message(ffi.cast("ljasync_message *", arg)))
  local f = assert(loadstring(a[1], "=thread"))
  local r = pack(xpcall(f, debug.traceback, unpack(a, 2, a.n)))
  a, f = nil, nil
  local m = encoder.encode_message(unpack(r, 1, r.n))
  r = nil
  collectgarbage()
  collectgarbage()
  return m
end

local Thread_t = CallbackFactory("void *(*)(void *)")
local trampoline_code = string.dump(trampoline)

--- Starts f(...) (f must have no upvalues) in a new OS thread with a fresh Lua state (a
--- callback of its own, freed by join), as a real thread would have.
function T.spawn(f, ...)
  local msg = encoder.encode_message(string.dump(f), ...)
  local cb = Thread_t(trampoline_code, { name = "sync spec thread" })
  local tid = ffi.new("ljt_pthread_t[1]")
  local rc = ffi.C.pthread_create(tid, nil, cb:funcptr(), msg)
  if rc ~= 0 then
    core.C.ljasync_message_free(msg)
    cb:free()
    error("pthread_create failed: " .. rc, 2)
  end
  return { tid = tid, msg = msg, cb = cb }
end

--- Waits for the thread; returns its results, or raises its error.
function T.join(th)
  local ret = ffi.new("void *[1]")
  assert(ffi.C.pthread_join(th.tid[0], ret) == 0)
  core.C.ljasync_message_free(th.msg)
  local _, last = th.cb:errors()
  th.cb:free()
  if ret[0] == nil then error("thread failed: " .. tostring(last), 2) end
  local m = ffi.cast("ljasync_message *", ret[0])
  local r = { n = 0 }
  local function pack(...) r = { n = select("#", ...), ... } end
  pack(encoder.decode_message(m))
  core.C.ljasync_message_free(m)
  if not r[1] then error("thread failed: " .. tostring(r[2]), 2) end
  return unpack(r, 2, r.n)
end

--- Monotonic seconds.
local ts = ffi.new("struct ljt_timespec")
function T.now()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

--- Polls `pred` every millisecond until it holds (true) or `limit` seconds pass (false).
--- For waiting on a state another thread reaches, never to let a race settle.
function T.wait_until(pred, limit)
  local deadline = T.now() + (limit or 10)
  while not pred() do
    if T.now() > deadline then return false end
    ffi.C.usleep(1000)
  end
  return true
end

return T
