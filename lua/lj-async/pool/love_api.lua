-- Private: the pool's LÖVE "async" surface (seed 001): define, call, undefine and the worker
-- counts (load, getWorkerCount, addWorker, stopWorkers, ensure.*). lj-async.pool assembles it
-- with update() and the rest (pool/jobs.lua). Every function here runs on the thread that owns
-- the calling state.
local C = require "lj-async.pool_abi"
local encoder = require "lj-async.encoder"
local jobs = require "lj-async.pool.jobs"
local check = require "lj-async.pool.check"

local try_encode_message = encoder.try_encode_message
local submit, undefine_now, stored = jobs.submit, jobs.undefine_now, jobs.stored
local check_callback, check_count = check.callback, check.count
local type, error = type, error

local M = {}

local defs = {}              -- name -> definition record { id, name, outstanding, dead }

local function call(level, cb, name, ...)
  local d = defs[name]
  if not d then
    if type(name) ~= "string" then
      error(("bad name: expected a string, got %s"):format(type(name)), level + 1)
    end
    error(("bad name: no function '%s' is defined in this state (use async.define)"):format(name), level + 1)
  end
  check_callback(cb, level + 1)
  local msg, err = try_encode_message(...)
  if not msg then error(("bad arguments to '%s': %s"):format(name, err), level + 1) end
  return submit(d, cb, msg, level + 1)  -- submit's caller is call
end

--- Queues a call of the function defined as `name` with the arguments. The callback (a
--- function called with the results, or {success = f, error = g}) runs in this state.
--- Returns the job handle, or nil, "full" when the queue is capped and when_full says so.
function M.call(callback, name, ...)
  return call(2, callback, name, ...)
end

--- Makes `func` (bytecode, upvalues copied by value) callable by name in this state; returns
--- function(callback, ...) that calls it. Redefining a name lets jobs already queued run the
--- old function.
function M.define(name, func)
  if type(name) ~= "string" then error(("bad name: expected a string, got %s"):format(type(name)), 2) end
  if type(func) ~= "function" then error(("bad function for '%s': expected a function, got %s"):format(name, type(func)), 2) end
  local msg, err = try_encode_message(func)
  if not msg then error(("cannot define '%s': %s"):format(name, err), 2) end
  local old = defs[name]
  if old then
    old.dead = true
    if old.outstanding == 0 then undefine_now(old) end
  end
  local d = { id = C.ljasync_pool_define(name, msg), name = name, outstanding = 0 }
  defs[name], stored[d] = d, true
  return function(callback, ...) return call(2, callback, name, ...) end
end

--- Forgets the definition. Jobs already queued still run it. Returns whether it existed.
function M.undefine(name)
  local d = defs[name]
  if not d then return false end
  defs[name] = nil
  d.dead = true
  if d.outstanding == 0 then undefine_now(d) end
  return true
end

-- -- Worker counts --

--- Starts workers: at least n (default 1). Turns autoscaling off.
function M.load(n)
  if n == nil then n = 1 end
  check_count(n, "worker count", 2)
  C.ljasync_pool_ensure(n, 0x7fffffff, 1)
end

--- Live workers, counted at once (starting ones in, stopping ones out).
function M.getWorkerCount()
  return C.ljasync_pool_workers()
end

--- Adds one worker (autoscaling off).
function M.addWorker()
  C.ljasync_pool_add(1)
end

--- Stops `amount` workers once they finish their current job and the jobs queued before this
--- call; workers added later are never affected. Autoscaling off.
function M.stopWorkers(amount)
  check_count(amount, "amount", 2)
  C.ljasync_pool_stop(amount)
end

local ensure = {}
--- Exactly n live workers (adds or stops the difference at once). Chainable.
function ensure.exactly(n)
  check_count(n, "worker count", 2)
  C.ljasync_pool_ensure(n, n, 1)
  return ensure
end
function ensure.atLeast(n)
  check_count(n, "worker count", 2)
  C.ljasync_pool_ensure(n, 0x7fffffff, 1)
  return ensure
end
function ensure.atMost(n)
  check_count(n, "worker count", 2)
  C.ljasync_pool_ensure(0, n, 1)
  return ensure
end
M.ensure = ensure

return M
