-- Private: lj-async.sync's counting semaphore.
local C = require "lj-async.sync.abi"
local core = require "lj-async.core"
local handle = require "lj-async.sync.handle"
local check = require "lj-async.sync.check"

local tonumber, error = tonumber, error
local timeout_arg, freed, integer, MAX = core.timeout, handle.freed, check.integer, check.MAX
local sem_post, sem_wait = C.ljasync_sem_post, C.ljasync_sem_wait

local Semaphore = {}

--- Adds `n` permits (default 1) and wakes up to `n` waiters.
function Semaphore:post(n)
  local p = self.p
  if p == nil then freed("semaphore") end
  if n == nil then n = 1 else n = integer(n, 1, MAX, "count", "argument #1 to 'post'", 2) end
  if sem_post(p, n) ~= 0 then error("semaphore count would overflow", 2) end
end

--- Takes a permit, waiting at most `timeout` seconds (nil = forever, 0 = try once).
--- Returns true, or false, "timeout".
function Semaphore:wait(timeout)
  local p = self.p
  if p == nil then freed("semaphore") end
  if sem_wait(p, timeout_arg(timeout, 1, "wait")) == 0 then return true end
  return false, "timeout"
end

--- Takes a permit if one is there: true, or false, "timeout".
function Semaphore:try()
  local p = self.p
  if p == nil then freed("semaphore") end
  if sem_wait(p, 0) == 0 then return true end
  return false, "timeout"
end

--- The number of permits now (a snapshot).
function Semaphore:value()
  local p = self.p
  if p == nil then freed("semaphore") end
  return tonumber(C.ljasync_sem_value(p))
end

local ct, adopt = handle.kind("sem", "semaphore", Semaphore)

local M = { ctype = ct }

--- sync.semaphore([count]) or sync.semaphore{count = n}: `count` permits (default 0).
function M.new(arg)
  return adopt(C.ljasync_sem_new(check.integer_option(arg, "count", "semaphore", 0, 0, 2)))
end

return M
