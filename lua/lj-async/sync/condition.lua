-- Private: lj-async.sync's condition variable, waited on with a lj-async.sync mutex.
local ffi = require "ffi"
local C = require "lj-async.sync.abi"
local core = require "lj-async.core"
local handle = require "lj-async.sync.handle"
local check = require "lj-async.sync.check"
local Mutex_ct = require("lj-async.sync.mutex").ctype

local ffi_istype, error, type = ffi.istype, error, type
local timeout_arg, freed = core.timeout, handle.freed
local cond_wait, cond_signal, cond_broadcast = C.ljasync_cond_wait, C.ljasync_cond_signal, C.ljasync_cond_broadcast

local Condition = {}

--- Releases `mutex` (held by this thread), waits for a signal or `timeout` seconds, and
--- re-locks it. Returns true, or false, "timeout". Wakeups may be spurious: wait in a loop
--- on your predicate. `timeout` 0 returns false, "timeout" at once, keeping the lock.
function Condition:wait(mutex, timeout)
  local p = self.p
  if p == nil then freed("condition") end
  if not ffi_istype(Mutex_ct, mutex) then
    error("bad argument #1 to 'wait' (expected a mutex, got " .. (handle.kind_of(mutex) or type(mutex)) .. ")", 2)
  end
  local m = mutex.p
  if m == nil then error("bad argument #1 to 'wait' (mutex has been freed)", 2) end
  local st = cond_wait(p, m, timeout_arg(timeout, 2, "wait"))
  if st == 0 then return true end
  if st == 1 then return false, "timeout" end
  error("bad argument #1 to 'wait' (mutex is not locked by this thread)", 2)
end

--- Wakes one waiter (if any).
function Condition:signal()
  local p = self.p
  if p == nil then freed("condition") end
  cond_signal(p)
end

--- Wakes every waiter.
function Condition:broadcast()
  local p = self.p
  if p == nil then freed("condition") end
  cond_broadcast(p)
end

local ct, adopt = handle.kind("cond", "condition", Condition)

local M = { ctype = ct }

--- sync.condition(): a new condition variable.
function M.new(arg)
  check.no_arguments(arg, "condition", 2)
  return adopt(C.ljasync_cond_new())
end

return M
