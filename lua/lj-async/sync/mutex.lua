-- Private: lj-async.sync's mutex, owned per OS thread, not recursive, misuse refused.
local C = require "lj-async.sync.abi"
local core = require "lj-async.core"
local handle = require "lj-async.sync.handle"
local check = require "lj-async.sync.check"

local error = error
local timeout_arg, freed = core.timeout, handle.freed
-- Hot functions as upvalues: the JIT then calls them directly.
local mutex_lock, mutex_unlock = C.ljasync_mutex_lock, C.ljasync_mutex_unlock

local RECURSIVE = "mutex is already locked by this thread (lj-async mutexes are not recursive)"

local Mutex = {}

--- Locks, waiting at most `timeout` seconds (nil = forever, 0 = try once).
--- Returns true, or false, "timeout". Locking a mutex this thread holds is an error.
--- Runs on the calling thread, which then owns the lock.
function Mutex:lock(timeout)
  local p = self.p
  if p == nil then freed("mutex") end
  local st = mutex_lock(p, timeout_arg(timeout, 1, "lock"))
  if st == 0 then return true end
  if st == 1 then return false, "timeout" end
  error(RECURSIVE, 2)
end

--- Tries once: true, or false, "timeout" when another thread holds it.
function Mutex:trylock()
  local p = self.p
  if p == nil then freed("mutex") end
  local st = mutex_lock(p, 0)
  if st == 0 then return true end
  if st == 1 then return false, "timeout" end
  error(RECURSIVE, 2)
end

--- Unlocks. Unlocking a mutex this thread does not hold is an error (the lock is untouched).
function Mutex:unlock()
  local p = self.p
  if p == nil then freed("mutex") end
  if mutex_unlock(p) ~= 0 then error("mutex is not locked by this thread", 2) end
end

--- Whether this thread holds the mutex.
function Mutex:held()
  local p = self.p
  if p == nil then freed("mutex") end
  return C.ljasync_mutex_held(p) == 1
end

local ct, adopt = handle.kind("mutex", "mutex", Mutex)

local M = { ctype = ct }

--- sync.mutex(): a new unlocked mutex.
function M.new(arg)
  check.no_arguments(arg, "mutex", 2)
  return adopt(C.ljasync_mutex_new())
end

return M
